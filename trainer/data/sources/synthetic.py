"""Generated digits (:mod:`trainer.data.synthetic`) as a source: written as IDX files into
``--data-dir`` (default ``data/synthetic``) on first use, no download needed."""

from __future__ import annotations

import logging
from pathlib import Path

from trainer.data.idx import find_split, missing_files, read_idx_header
from trainer.data.sources.base import Normalisation
from trainer.data.sources.idx_files import IdxSource
from trainer.data.sources.mnist import MNIST_MEAN, MNIST_STD
from trainer.errors import DataError
from trainer.registry import register_source

logger = logging.getLogger("mstrain")


@register_source("synthetic", rank=80, default_dir="data/synthetic",
                 help="generated digits written into --data-dir, no download")
class SyntheticDigits(IdxSource):
    """Generated digits, ``train_size`` and ``test_size`` of them, drawn from ``seed``.

    Digits generated earlier are used only when they are as many as asked for: a run must not
    train on other data than its ``config.yaml`` records, and the folder is not generated again
    in place, since earlier runs (and runs going on) use it.
    """

    name = "synthetic"
    title = "generated digits"
    normalisation = Normalisation((MNIST_MEAN,), (MNIST_STD,))

    def __init__(self, data_dir: Path, synthetic_train_size: int = 6000,
                 synthetic_test_size: int = 1000, seed: int = 0) -> None:
        super().__init__(data_dir, download=True)
        self.sizes = {"train": synthetic_train_size, "test": synthetic_test_size}
        self.seed = seed

    def fetch(self, allow: bool) -> None:
        if not missing_files(self.data_dir):
            self._check_sizes()
            return
        if not allow:
            raise DataError(f"The data folder {self.data_dir} holds no generated digits "
                            f"(missing: {', '.join(missing_files(self.data_dir))}). Run training "
                            "with --data-source synthetic once to generate them.")
        from trainer.data.synthetic import generate_digits

        logger.info("Generating %d + %d synthetic digits in %s", self.sizes["train"],
                    self.sizes["test"], self.data_dir)
        generate_digits(self.data_dir, self.sizes["train"], self.sizes["test"], seed=self.seed)

    def _check_sizes(self) -> None:
        asked = self.sizes
        held = {}
        for split in asked:
            found = find_split(self.data_dir / split, split)
            held[split] = read_idx_header(found[1])[0] if found else None
        if held == asked:
            return
        flags = [f"--synthetic-{split}-size {held[split]}" for split in asked
                 if held[split] != asked[split] and held[split] is not None]
        raise DataError(
            f"The data folder {self.data_dir} holds {held['train']} training and {held['test']} "
            f"test digits, but this run asks for {asked['train']} and {asked['test']} "
            "(--synthetic-train-size, --synthetic-test-size); the folder is not generated "
            "again, since earlier runs used it as it is. Pass " + " ".join(flags) + " to use "
            "it, or another --data-dir (a new folder gets the digits you ask for), or delete "
            "the folder to generate it again."
        )
