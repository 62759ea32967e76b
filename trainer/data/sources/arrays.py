"""A user's own arrays as a data source: ``Trainer(config, source=ArraySource(...))`` from a
notebook, or returned by a ``pkg.mod:factory`` named with ``--data-source``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.data.sources.base import (
    KINDS,
    NATURAL,
    Normalisation,
    Source,
    SourceInfo,
    check_arrays,
    check_class_names,
)
from trainer.errors import DataError


class ArraySource(Source):
    """Images and labels already in memory.

    Args:
        train: ``(images, labels)``: uint8 ``[N, C, S, S]`` (C = 1 or 3) and one integer label
            per image.
        test: The same for the test split.
        class_names: One name per class, in label order. Defaults to `None`: ``"0"``, ``"1"``,
            ... up to the largest label.
        mean: Per-channel mean of the pixel values scaled to [0, 1]. Defaults to `None`:
            computed from the training images.
        std: Per-channel standard deviation, with ``mean``. Defaults to `None`.
        kind: ``"natural"`` (photos: crops and flips with ``--augment``) or ``"digits"``
            (MNIST-like glyphs). Defaults to `"natural"`.
        name: The name runs record for this data. Defaults to `"arrays"`.

    Raises:
        DataError: the arrays are not of the form above (checked here, before any training).

    Example:
        >>> source = ArraySource((x_train, y_train), (x_test, y_test),
        ...                      class_names=["cat", "dog"])  # doctest: +SKIP
        >>> Trainer(TrainConfig(epochs=2), source=source).fit()  # doctest: +SKIP
    """

    def __init__(self, train: tuple[Any, Any], test: tuple[Any, Any],
                 class_names: Sequence[str] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 kind: str = NATURAL, name: str = "arrays") -> None:
        where = f"Data source {name!r}"
        self.name = name
        if kind not in KINDS:
            raise DataError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}.")
        self.kind = kind
        splits = {}
        for split, pair in (("train", train), ("test", test)):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise DataError(f"{where}: the {split} split is {type(pair).__name__}, not a "
                                "pair (images, labels).")
            splits[split] = check_arrays(pair[0], pair[1], where=f"{where}, {split} split")
        shapes = {s: images.shape[1:] for s, (images, _) in splits.items()}
        if shapes["train"] != shapes["test"]:
            raise DataError(f"{where}: the training images are {list(shapes['train'])} and the "
                            f"test images {list(shapes['test'])}; both splits need the same "
                            "channels and size.")
        top = max(int(labels.max()) for _, labels in splits.values())
        names = class_names if class_names is not None else [str(k) for k in range(top + 1)]
        self.class_names = check_class_names(names, where)
        for split, (images, labels) in splits.items():
            check_arrays(images, labels, where=f"{where}, {split} split",
                         num_classes=len(self.class_names))
        self._splits = splits
        self.normalisation = None
        if (mean is None) != (std is None):
            raise DataError(f"{where}: give both mean and std, or neither (then they are "
                            "computed from the training images).")
        if mean is not None:
            channels = shapes["train"][0]
            found = Normalisation.from_dict({"mean": [float(m) for m in mean],
                                             "std": [float(s) for s in std]}, channels)
            if found is None:
                raise DataError(f"{where}: mean {list(mean)} and std {list(std)} are not "
                                f"{channels} value(s) each, means within 0-1 and deviations "
                                "above 0 (of pixel values scaled to [0, 1]).")
            self.normalisation = found

    def prepare(self, *, fetch: bool = True) -> SourceInfo:
        images = self._splits["train"][0]
        return SourceInfo(channels=images.shape[1], image_size=images.shape[2],
                          class_names=self.class_names,
                          counts={s: len(labels) for s, (_, labels) in self._splits.items()},
                          normalisation=self.normalisation, kind=self.kind,
                          about=f"the arrays of {self.name!r}")

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self._splits[split]

    def labels(self, split: str) -> np.ndarray:
        return self._splits[split][1]
