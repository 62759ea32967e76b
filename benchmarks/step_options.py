"""The cost per training step of each train-step option, against none, in one run.

    python benchmarks/step_options.py --data-dir ../shared/data/mnist-subset --rounds 3

Each variant is ``python train.py --net lenet --epochs 2`` with one option added (the default
recipe otherwise, so several steps per launch); the figure is the per-step time of the second epoch
from the epoch summary line (training only, validation excluded), a median over the rounds, with
the variants alternating round by round.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, run  # noqa: E402

VARIANTS = {
    "none": [],
    "--clip-grad-norm 1": ["--clip-grad-norm", "1"],
    "--clip-grad-value 0.1": ["--clip-grad-value", "0.1"],
    "--accumulate-steps 4": ["--accumulate-steps", "4"],
    "--ema-decay 0.999": ["--ema-decay", "0.999"],
    "--label-smoothing 0.1": ["--label-smoothing", "0.1"],
    "--augment": ["--augment"],
    "all of them": ["--clip-grad-norm", "1", "--accumulate-steps", "4", "--ema-decay", "0.999",
                    "--label-smoothing", "0.1", "--augment"],
}
EPOCH = re.compile(r"per step time: (\d+\.\d+) ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MSTRAIN_CACHE": str(Path(tmp) / "cache")}
        for i in range(args.rounds):
            for name in args.only:
                result = run([sys.executable, str(ROOT / "train.py"), "--net", "lenet",
                              "--epochs", "2", "--data-dir", str(args.data_dir.resolve()),
                              "--no-progress", "--no-plot", "--output-dir", str(Path(tmp) / "runs"),
                              "--run-name", f"{i}-{len(times[name])}-{abs(hash(name))}",
                              *VARIANTS[name]], env=env)
                times[name].append(float(EPOCH.findall(result.stdout)[-1]))
    base = statistics.median(times["none"]) if "none" in times else None
    print("| option | ms/step (epoch 2) | rounds | against none |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}" if base else ""
        print(f"| {name} | {median:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
