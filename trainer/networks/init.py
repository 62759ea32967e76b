"""Re-initialising a network's convolution and dense weights (``--init``)."""

from __future__ import annotations

# MindSpore's initialiser for each choice of --init; "default" keeps each layer's own.
INITIALIZERS = {"normal": "normal", "xavier": "xavier_uniform", "he": "he_normal",
                "uniform": "uniform"}


def apply_init(network, init: str) -> int:
    """Draws every ``nn.Conv2d`` and ``nn.Dense`` weight of ``network`` anew with ``init``
    (biases are kept); returns how many weights were drawn. ``"default"`` changes nothing.

    The draws follow MindSpore's global seed, so the same ``--seed`` gives the same weights.
    """
    if init == "default":
        return 0
    from mindspore import nn
    from mindspore.common.initializer import initializer

    count = 0
    for _, cell in network.cells_and_names():
        if isinstance(cell, (nn.Conv2d, nn.Dense)):
            weight = cell.weight
            weight.set_data(initializer(INITIALIZERS[init], weight.shape, weight.dtype))
            count += 1
    return count
