"""A network's layers in the order they run, with output shapes and parameter counts, like
Keras's ``Model.summary()``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Layer:
    """One call of a layer during a forward pass."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int  # counted at the layer's first call only, so the total adds up


@dataclass
class Summary:
    """What :func:`summarize` found: the layers and the network's parameter counts."""

    net: str
    input_shape: tuple[int, ...]
    layers: list[Layer] = field(default_factory=list)
    total: int = 0
    trainable: int = 0

    def format(self) -> str:
        """The table, as text."""
        rows = [("Layer (type)", "Output shape", "Params")]
        rows += [(f"{layer.name} ({layer.kind})", str(list(layer.output_shape)),
                  f"{layer.params:,}") for layer in self.layers]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)

        def line(row):
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

        body = [line(rows[0]), rule, *(line(row) for row in rows[1:]), rule]
        body += [f"Total params: {self.total:,}", f"Trainable params: {self.trainable:,}",
                 f"Non-trainable params: {self.total - self.trainable:,}"]
        return "\n".join([f"Network {self.net}, input {list(self.input_shape)}", *body])


def _layers(network) -> list[tuple[str, object]]:
    """The layers a summary lists: the leaf cells, and cells that declare themselves one layer
    (``summary_layer = True``, as :class:`~trainer.networks.pool.MaxPool2x2` does) in place of
    the cells inside them."""
    layers, whole = [], []
    for name, cell in network.cells_and_names():
        if not name or any(name.startswith(prefix + ".") for prefix in whole):
            continue
        if getattr(cell, "summary_layer", False):
            whole.append(name)
            layers.append((name, cell))
        elif not list(cell.cells()):
            layers.append((name, cell))
    return layers


def summarize(network, image_size: int, net: str = "", in_channels: int = 1) -> Summary:
    """Runs one forward pass of a zero image through ``network`` and records every leaf layer's
    output shape and its own parameters.

    Forward hooks exist in PyNative mode only, so the pass runs in PyNative and the mode is put
    back afterwards; the network's weights are not changed.
    """
    import mindspore as ms
    import numpy as np

    names = {id(cell): name for name, cell in network.cells_and_names() if name}
    counted: set[int] = set()
    summary = Summary(net, (1, in_channels, image_size, image_size))

    def hook(cell, inputs, outputs):
        first = id(cell) not in counted
        counted.add(id(cell))
        own = sum(p.size for p in cell.get_parameters(expand=False)) if first else 0
        shape = tuple(outputs.shape) if hasattr(outputs, "shape") else ()
        summary.layers.append(Layer(names.get(id(cell), type(cell).__name__),
                                    type(cell).__name__, shape, int(own)))

    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    handles = [cell.register_forward_hook(hook) for name, cell in _layers(network)]
    training = network.training
    try:
        network.set_train(False)
        network(ms.Tensor(np.zeros(summary.input_shape, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        network.set_train(training)
        ms.set_context(mode=mode)
    summary.total = int(sum(p.size for p in network.get_parameters()))
    summary.trainable = int(sum(p.size for p in network.trainable_params()))
    return summary
