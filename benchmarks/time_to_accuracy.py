"""Seconds from the command's start to a test accuracy, for a recipe of ``train.py``.

Runs ``train.py`` with the given options (plus the ``benchmarks.probes:Clock`` callback, which
prints the elapsed time and validation accuracy at the end of every epoch) and reports the first
epoch whose validation accuracy reaches the target. Several runs give the median.

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data/mnist-subset --runs 3 \\
        -- --config configs/lenet_fast.yaml
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, median, run  # noqa: E402


def measure(data_dir: Path, train_args: list[str], target: float, out: Path, name: str) -> dict:
    """One run; returns the seconds and epoch at which ``target`` was reached (or None)."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--no-progress",
           "--log-every", "0", "--output-dir", str(out), "--run-name", name,
           "--callback", "benchmarks.probes:Clock", *train_args]
    result = run(cmd)
    epochs = [(int(e), float(t), float(a)) for e, t, a in result.events.get("epoch", [])]
    reached = next(((e, t) for e, t, a in epochs if a >= target), None)
    return {"epoch": reached[0] if reached else None, "seconds": reached[1] if reached else None,
            "best": max((a for _, _, a in epochs), default=float("nan")), "wall": result.wall,
            "epochs_run": len(epochs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s [options] -- [train.py options]")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--runs", type=int, default=1)
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    train_args = argv[split + 1:]
    with tempfile.TemporaryDirectory() as out:
        runs = [measure(args.data_dir, train_args, args.target, Path(out), f"r{i}")
                for i in range(args.runs)]
    for i, r in enumerate(runs):
        where = (f"epoch {r['epoch']} after {r['seconds']:.1f} s" if r["epoch"]
                 else f"not reached in {r['epochs_run']} epochs")
        print(f"run {i}: {args.target:.2%} {where}; best {r['best']:.4f}; whole run "
              f"{r['wall']:.1f} s")
    hit = [r["seconds"] for r in runs if r["seconds"] is not None]
    if hit:
        print(f"median time to {args.target:.2%}: {median(hit):.1f} s "
              f"({len(hit)}/{len(runs)} runs reached it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
