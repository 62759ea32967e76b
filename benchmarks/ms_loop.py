"""The same LeNet-5 run written in MindSpore by hand, as the tutorials write it: the peers that
``train.py``'s wall time is compared to besides PyTorch.

    python benchmarks/ms_loop.py --style jit   --data-dir ../shared/data/mnist-subset --epochs 3
    python benchmarks/ms_loop.py --style model --data-dir ../shared/data/mnist-subset --epochs 3

Both read the digits ``train.py`` reads (the training files less the held-out tenth, validation
on that tenth after every epoch, the test split once at the end) through the tutorial's pipeline:
``MnistDataset``, ``Resize`` to 32x32, ``Rescale``, ``Normalize``, ``HWC2CHW``, a shuffle and
batches of 32 with the last incomplete one dropped. The network is the one ``--net lenet`` builds
(the same initial weights) with the tutorials' ``nn.MaxPool2d`` in place of ``MaxPool2x2``, with
``SoftmaxCrossEntropyWithLogits`` and ``Momentum`` (lr 0.01, momentum 0.9).

* ``--style jit``: the loop of MindSpore's "quick start": ``value_and_grad`` of a forward
  function, a train step compiled with ``mindspore.jit``, ``create_tuple_iterator``, the loss read
  back every 100 steps; evaluation with a compiled forward pass.
* ``--style model``: a bare ``Model(net, loss, opt, metrics={"accuracy"})``, ``model.train`` one
  epoch at a time with no callbacks, then ``model.eval`` on the held-out digits.

It prints the probe lines of ``benchmarks.probes.Clock`` so the benchmark reads it like the others.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

from benchmarks.probes import launch_time  # noqa: E402
from benchmarks.splits import peer_parser  # noqa: E402


def tutorial_dataset(folder: Path, usage: str, batch_size: int, training: bool):
    """The tutorial's pipeline over a folder of raw IDX files."""
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.dataset import transforms, vision

    dataset = ds.MnistDataset(str(folder), usage=usage, shuffle=training)
    dataset = dataset.map([vision.Resize((32, 32)), vision.Rescale(1.0 / 255.0, 0.0),
                           vision.Normalize([0.1307], [0.3081]), vision.HWC2CHW()], "image")
    dataset = dataset.map(transforms.TypeCast(ms.int32), "label")
    return dataset.batch(batch_size, drop_remainder=training)


def main(argv=None) -> int:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--style", choices=("jit", "model"), required=True)
    args = parser.parse_args(argv)
    t0 = launch_time()

    import mindspore as ms
    from mindspore import nn, ops

    from benchmarks.splits import run_splits
    from trainer.networks import build_network

    ms.set_seed(args.seed)
    ms.set_context(mode=ms.GRAPH_MODE if args.style == "model" else ms.PYNATIVE_MODE)
    splits = run_splits(args.data_dir)
    train = tutorial_dataset(splits["train"], "train", args.batch_size, True)
    valid = tutorial_dataset(splits["val"], "test", args.eval_batch_size, False)
    test = tutorial_dataset(splits["test"], "test", args.eval_batch_size, False)
    net = build_network("lenet", 10).cell
    net.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)  # the tutorials' pooling
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=args.lr, momentum=0.9)
    clock = {"first": True}

    def first_step() -> None:
        if clock["first"]:
            clock["first"] = False
            print(f"BENCH first_step {time.time() - t0:.3f}", file=sys.stderr, flush=True)

    if args.style == "model":
        from mindspore.train import Callback, Model

        class First(Callback):
            def on_train_step_end(self, run_context) -> None:
                first_step()

        model = Model(net, loss_fn, optimizer, metrics={"accuracy"})
        for epoch in range(1, args.epochs + 1):
            model.train(1, train, callbacks=[First()] if clock["first"] else None,
                        dataset_sink_mode=False)
            accuracy = model.eval(valid, dataset_sink_mode=False)["accuracy"]
            print(f"BENCH epoch {epoch} {time.time() - t0:.3f} {accuracy:.6f}", file=sys.stderr,
                  flush=True)
        accuracy = model.eval(test, dataset_sink_mode=False)["accuracy"]
    else:
        def forward(data, label):
            logits = net(data)
            return loss_fn(logits, label), logits

        grad_fn = ms.value_and_grad(forward, None, optimizer.parameters, has_aux=True)

        @ms.jit
        def train_step(data, label):
            (loss, _), grads = grad_fn(data, label)
            return ops.depend(loss, optimizer(grads))

        @ms.jit
        def predict(data):
            return net(data).argmax(1)

        def score(dataset) -> float:
            net.set_train(False)
            correct = total = 0
            for data, label in dataset.create_tuple_iterator():
                correct += int((predict(data) == label).sum().asnumpy())
                total += len(label)
            return correct / total

        for epoch in range(1, args.epochs + 1):
            net.set_train()
            for step, (data, label) in enumerate(train.create_tuple_iterator()):
                loss = train_step(data, label)
                first_step()
                if step % 100 == 0:
                    loss.asnumpy()  # the tutorial prints the loss every 100 steps
            accuracy = score(valid)
            print(f"BENCH epoch {epoch} {time.time() - t0:.3f} {accuracy:.6f}", file=sys.stderr,
                  flush=True)
        accuracy = score(test)
    print(f"BENCH test {accuracy:.6f}", file=sys.stderr, flush=True)
    print(f"Test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
