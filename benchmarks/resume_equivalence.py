"""Exact resume on real data: N epochs straight against K epochs, then ``--resume auto`` to N,
and against a run interrupted by SIGTERM in the middle of an epoch, then resumed.

Runs ``train.py`` as a user would (subprocesses), then compares every tensor of the final
bundles bit for bit and the history rows (all columns but the wall-clock epoch time).

    python benchmarks/resume_equivalence.py --data-dir ../shared/data/mnist-subset --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGNAL_AT = textwrap.dedent("""
    import os, signal
    from mindspore.train import Callback

    class SignalAt(Callback):
        def __init__(self, step):
            self.step = step

        def on_train_step_end(self, run_context):
            if run_context.original_args().cur_step_num == self.step:
                os.kill(os.getpid(), signal.SIGTERM)
""")


def train(work: Path, args: list[str]) -> tuple[int, float]:
    env = {**os.environ, "GLOG_v": "3", "PYTHONPATH": str(work)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=work, env=env,
                            capture_output=True, text=True)
    if result.returncode not in (0, 130):
        sys.exit(f"train.py {' '.join(args)} failed:\n{result.stderr}")
    return result.returncode, time.perf_counter() - start


def final_state(run_dir: Path):
    from trainer.checkpoint import load_bundle

    pointer = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    bundle = load_bundle(run_dir / "checkpoints" / pointer["file"])
    tensors = {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}
    rows = json.loads((run_dir / "history.json").read_text())["rows"]
    return tensors, [{k: v for k, v in r.items() if k != "epoch_time"} for r in rows]


def compare(reference: Path, other: Path) -> str:
    ref_t, ref_h = final_state(reference)
    oth_t, oth_h = final_state(other)
    differing = [k for k in ref_t if not np.array_equal(ref_t[k], oth_t.get(k))]
    verdict = "bit-identical" if not differing else f"{len(differing)} tensors differ"
    same_history = "same history" if ref_h == oth_h else "history differs"
    return f"{verdict} ({len(ref_t)} tensors), {same_history}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--first", type=int, default=1, help="epochs before the resume")
    args = parser.parse_args(argv)
    data = str(args.data_dir.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "signal_at.py").write_text(SIGNAL_AT)
        common = ["--data-dir", data, "--output-dir", "runs", "--no-progress", "--no-plot",
                  "--log-every", "0"]
        _, t_straight = train(work, [*common, "--epochs", str(args.epochs), "--run-name", "a"])
        _, t1 = train(work, [*common, "--epochs", str(args.first), "--run-name", "b"])
        _, t2 = train(work, [*common, "--epochs", str(args.epochs), "--run-name", "b",
                             "--resume", "auto"])
        steps = json.loads((work / "runs" / "a" / "checkpoints" / "latest.json").read_text())
        mid = steps["global_step"] // args.epochs * args.first + 37
        code, t3 = train(work, [*common, "--epochs", str(args.epochs), "--run-name", "c",
                                "--callback", f"signal_at:SignalAt(step={mid})"])
        _, t4 = train(work, [*common, "--epochs", str(args.epochs), "--run-name", "c",
                             "--resume", "auto"])
        print(f"straight {args.epochs} epochs: {t_straight:.1f} s")
        print(f"{args.first} + resume to {args.epochs}: {t1:.1f} + {t2:.1f} s -> "
              f"{compare(work / 'runs' / 'a', work / 'runs' / 'b')}")
        print(f"SIGTERM at step {mid} (exit {code}) + resume: {t3:.1f} + {t4:.1f} s -> "
              f"{compare(work / 'runs' / 'a', work / 'runs' / 'c')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
