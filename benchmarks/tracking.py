"""What ``--report-to`` costs: the README's command with each tracker against ``none``.

    python benchmarks/tracking.py --data-dir ../shared/data/mnist-subset --rounds 3 --epochs 5

Each round runs ``python train.py --net lenet --epochs E --report-to V`` once for every variant
V (none, tensorboard, mlflow, tensorboard,mlflow), in an order that rotates from round to round.
MLflow records into its default store, a SQLite database in the variant's output folder (the
first round creates it, as a user's first tracked run does). Per run: the median ``epoch_time``
of epochs 2..E from ``history.json`` (an epoch with validation; epoch 1 also compiles), epoch 1's,
and the whole process's wall time. The table gives the medians over rounds and each variant's
ratio to ``none`` in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, median, run  # noqa: E402

VARIANTS = ("none", "tensorboard", "mlflow", "tensorboard,mlflow")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 also compiles)")
    figures: dict[str, dict[str, list[float]]] = {
        v: {"epoch": [], "first": [], "wall": []} for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {"MSTRAIN_CACHE": str(tmp / "cache")}

        def train(variant: str, out: Path, name: str):
            return run([sys.executable, str(ROOT / "train.py"), "--net", "lenet", "--epochs",
                        str(args.epochs), "--data-dir", str(args.data_dir.resolve()),
                        "--output-dir", str(out), "--run-name", name, "--report-to", variant],
                       env=env, terminal=True)

        train("none", tmp / "fill", "fill")  # decodes the data into the cache, not measured
        for r in range(args.rounds):
            shift = r % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                out = tmp / variant.replace(",", "+")
                result = train(variant, out, f"round{r}")
                rows = json.loads((out / f"round{r}" / "history.json").read_text())["rows"]
                figures[variant]["epoch"].append(median([row["epoch_time"] for row in rows[1:]]))
                figures[variant]["first"].append(rows[0]["epoch_time"])
                figures[variant]["wall"].append(result.wall)
                print(f"round {r}: {variant:<20} epoch {figures[variant]['epoch'][-1]:.2f} s, "
                      f"wall {result.wall:.1f} s", file=sys.stderr)
    base = {k: median(v) for k, v in figures["none"].items()} if "none" in figures else None
    print(f"| --report-to | s/epoch (epochs 2-{args.epochs}) | ratio | epoch 1 s | ratio | "
          "whole run s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for variant, values in figures.items():
        cells = []
        for key in ("epoch", "first", "wall"):
            value = median(values[key])
            spread = f" ({min(values[key]):.2f}-{max(values[key]):.2f})"
            ratio = f"{value / base[key]:.3f}" if base else "-"
            cells += [f"{value:.2f}{spread}", ratio]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print(f"\n{args.rounds} rounds of python train.py --net lenet --epochs {args.epochs} "
          f"--report-to V on {args.data_dir}; medians (min-max).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
