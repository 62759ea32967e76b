"""The fault table of ``tests/e2e/test_faults.py`` run against a checkout, one verdict a case.

    python benchmarks/fault_report.py [--checkout DIR]

The verdict is ``kept`` when the case ends as the table requires (exit status, a one-paragraph
message holding the expected phrase, no traceback, within its time and memory bounds, nothing
half-written, the case's own check), and otherwise says how it broke. Pass ``--checkout`` with an
earlier version (``git worktree add /tmp/before REV``) to see what a change fixed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

from tests.e2e import test_faults as table  # noqa: E402

CLASSES = ("code", "runs", "sizes", "disk", "fields", "signals", "wrong")


def verdict(case, result, work) -> str:
    out = result.stdout + result.stderr
    seconds, megabytes = case.bounds
    if (work.root / "PWNED").exists():
        return "code named in a file ran"
    if "Traceback" in out:
        return "traceback"
    if result.seconds >= seconds * 3 - 1 or result.status == -9 or result.status == 137:
        return f"killed after {result.seconds:.0f} s"
    if result.status != case.status:
        return f"exit {result.status}, not {case.status}"
    if case.status != 0 and case.first not in result.message:
        return "another message"
    if case.status == 0 and case.first not in result.stdout:
        return "finished without saying so"
    if result.seconds >= seconds or result.peak_mb >= megabytes:
        return f"over its bound ({result.seconds:.1f} s, {result.peak_mb:.0f} MB)"
    if case.check is not None:
        try:
            case.check(work, result)
        except AssertionError as exc:
            first = (str(exc).splitlines() or ["its own check"])[0]
            return f"check failed: {first[:60]}"
    return "kept"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=table.ROOT)
    parser.add_argument("--classes", nargs="+", choices=CLASSES, default=list(CLASSES),
                        help="run only these classes of the table")
    args = parser.parse_args(argv)
    code = args.checkout.resolve()
    from trainer.data.synthetic import generate_digits

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        digits = generate_digits(tmp / "digits", train_size=1600, test_size=400, seed=3)
        finished_work = table.Work(tmp / "finished", digits)
        finished_work.root.mkdir()
        made = table.run_measured(table._train_args(
            finished_work, "--run-name", "done", "--save-every-steps", "8", "--log-every", "8"),
            finished_work.root)
        assert made.status == 0, made.stderr
        finished = finished_work.root / "runs" / "done"
        print("| class | case | verdict | seconds | peak MB |")
        print("|---|---|---|---|---|")
        groups = {"code": table.CODE, "runs": table.RUNS, "sizes": table.SIZES,
                  "disk": table.DISK, "fields": table.FIELDS, "signals": table.SIGNALS,
                  "wrong answers": table.WRONG}
        for group, cases in groups.items():
            if group.split()[0] not in args.classes:
                continue
            for i, case in enumerate(cases):
                work = table.Work(tmp / f"{group}-{i}", digits, code=code)
                work.root.mkdir()
                try:
                    argv_ = case.setup(work, finished)
                    seconds, _ = case.bounds
                    watch = (table._term_when_decoding if case.id == "sigterm-during-cache-build"
                             else None)
                    result = table.run_measured(argv_, work.root, case.env,
                                                timeout=seconds * 3, on_line=watch)
                    text = verdict(case, result, work)
                    print(f"| {group} | {table._case_id(case)} | {text} | {result.seconds:.1f} "
                          f"| {result.peak_mb:.0f} |", flush=True)
                finally:
                    holder = work.made.get("holder")
                    if holder is not None and holder.poll() is None:
                        holder.kill()
                        holder.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
