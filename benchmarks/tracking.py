"""What ``--report-to`` costs: the README's command with each tracker against ``none``.

    python benchmarks/tracking.py --data-dir ../shared/data/mnist-subset --rounds 3 --epochs 5

Each round runs ``python train.py --net lenet --epochs E --report-to V`` once for every variant
V (none, tensorboard, mlflow, tensorboard,mlflow), in an order that rotates from round to round.
MLflow records into its default store, a SQLite database in the variant's output folder (the
first round creates it, as a user's first tracked run does). Per run: the median ``epoch_time``
of epochs 2..E from ``history.json`` (an epoch with validation; epoch 1 also compiles), epoch 1's,
and the whole process's wall time. The table gives the medians over rounds and each variant's
ratio to ``none`` in the same run.

    python benchmarks/tracking.py --data-dir ../shared/data/mnist-subset --epochs 5 --hooks

times, instead, the trackers' own hooks inside one run (both trackers, in this process), and the
CPU time of the MLflow process: what the trackers cost without the machine's noise.
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
HOOKS = ("on_train_begin", "on_train_epoch_begin", "on_train_step_end", "on_train_epoch_end",
         "on_train_end", "state_dict", "finish")


def hook_seconds(data_dir: Path, epochs: int, out: Path) -> dict[str, float]:
    """Runs ``Trainer.fit`` once in this process with both trackers, timing every hook of
    theirs (and their ``state_dict``, which a checkpoint asks for): the training process's own
    time in the trackers, and the MLflow process's CPU time (``RUSAGE_CHILDREN``)."""
    import resource
    import time

    from callbacks.mlflow_logger import MLflowLogger
    from callbacks.tensorboard_logger import TensorBoardLogger
    from callbacks.tracking import TrackingLogger
    from trainer import TrainConfig, Trainer

    spent: dict[str, float] = {}
    depth = {"now": 0}  # a subclass's hook calls the base's: count the outermost call only
    for cls in (TrackingLogger, TensorBoardLogger, MLflowLogger):
        for name in HOOKS:
            if name in vars(cls):
                original = vars(cls)[name]

                def timed(self, *a, _original=original, _name=name):
                    start = time.perf_counter()
                    depth["now"] += 1
                    try:
                        return _original(self, *a)
                    finally:
                        depth["now"] -= 1
                        if not depth["now"]:
                            key = f"{type(self).__name__}.{_name}"
                            spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

                setattr(cls, name, timed)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    trainer = Trainer(TrainConfig(net="lenet", epochs=epochs, data_dir=str(data_dir),
                                  output_dir=str(out), run_name="hooks", progress=False,
                                  report_to="tensorboard,mlflow"))
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    per = {k: v for k, v in spent.items()}
    per["fit wall"] = wall
    per["MLflow process CPU"] = child
    return per


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--hooks", action="store_true", help="instead: time the trackers' hooks "
                        "inside one in-process run (both trackers)")
    args = parser.parse_args(argv)
    if args.hooks:
        with tempfile.TemporaryDirectory() as tmp:
            spent = hook_seconds(args.data_dir.resolve(), args.epochs, Path(tmp))
        print("| where | seconds in the run | per epoch |")
        print("|---|---|---|")
        for key, value in sorted(spent.items()):
            print(f"| {key} | {value:.3f} | {value / args.epochs:.4f} |")
        return 0
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
