"""Step time of the Trainer (TrainStep + default callbacks) against a bare ``Model.train``.

Three variants train LeNet-5 with the same pipeline (``trainer.data.build_dataset``), batch size,
optimizer and seed, in the same process, alternating, so machine noise hits all alike: a bare
``Model.train`` (one step per launch), the Trainer launching one step at a time
(``steps_per_launch=1``: what its callbacks and statistics cost) and the Trainer as ``train.py``
runs it (several steps per launch). Time is taken at every ``on_train_step_end`` (the data fetch
included) and divided by the steps since the previous one; the first epoch of each variant is a
warm-up (graph compilation) and is not counted. Prints medians and the ratios.

    python benchmarks/step_overhead.py --data-dir ../shared/data/mnist-subset --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def _timer():
    from mindspore.train import Callback

    class StepTimer(Callback):
        launch_aware = True  # divides by the steps of each launch

        def __init__(self):
            self.marks: list[tuple[float, int, int]] = []  # (time, step, epoch)

        def on_train_step_end(self, run_context):
            cb_params = run_context.original_args()
            self.marks.append((time.perf_counter(), cb_params.cur_step_num,
                               cb_params.cur_epoch_num))

        def step_ms(self, skip_epochs: int = 1) -> list[float]:
            return [(t1 - t0) * 1000 / (s1 - s0)
                    for (t0, s0, _), (t1, s1, e1) in zip(self.marks, self.marks[1:])
                    if e1 > skip_epochs]

    return StepTimer()


def bare(data_dir: Path, epochs: int, batch_size: int, seed: int) -> list[float]:
    """A hand-written MindSpore loop: Model(net, loss, opt) and only the timing callback."""
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore import nn
    from mindspore.train import Model

    from trainer.data import build_dataset, prepare_split
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(seed)
    ds.config.set_seed(seed)
    split = prepare_split(data_dir, "train")
    train = build_dataset(split.folder, "train", image_size=32, batch_size=batch_size,
                          training=True, cache=True, seed=seed)
    net = LeNet5()
    model = Model(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                  nn.Momentum(net.trainable_params(), 0.01, 0.9))
    timer = _timer()
    model.train(epochs, train, callbacks=[timer], dataset_sink_mode=False)
    return timer.step_ms()


def with_trainer(data_dir: Path, epochs: int, batch_size: int, seed: int,
                 steps_per_launch: int = 0) -> list[float]:
    """What ``train.py`` runs: TrainStep, default callbacks and validation (the median ignores
    the one gap per epoch that validation adds)."""
    from trainer import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data_dir=str(data_dir), epochs=epochs, batch_size=batch_size,
                          seed=seed, output_dir=out, run_name="bench", progress=False,
                          steps_per_launch=steps_per_launch)
        timer = _timer()
        Trainer(cfg).fit(callbacks=[timer])
    return timer.step_ms()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2, help="per variant and round (>= 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    variants = {
        "bare Model.train": lambda: bare(args.data_dir, args.epochs, args.batch_size, 0),
        "Trainer, 1 step/launch": lambda: with_trainer(args.data_dir, args.epochs,
                                                       args.batch_size, 0, steps_per_launch=1),
        "train.py (Trainer)": lambda: with_trainer(args.data_dir, args.epochs, args.batch_size,
                                                   0),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, measure in variants.items():
            results[name].append(statistics.median(measure()))
    base = statistics.median(results["bare Model.train"])
    print(f"\n{'variant':<24} {'median step ms':>15} {'per round':>30} {'ratio':>7}")
    for name, values in results.items():
        med = statistics.median(values)
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:<24} {med:>15.3f} {rounds:>30} {med / base:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps({name: {"median_ms": statistics.median(values),
                                                "rounds_ms": values}
                                         for name, values in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
