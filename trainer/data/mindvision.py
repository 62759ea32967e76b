"""mindvision 0.1.0 as a second data and network source, for code from MindSpore's tutorials.

MindSpore's training tutorial builds MNIST with ``mindvision.classification.dataset.Mnist`` and
LeNet with ``mindvision.classification.models.lenet``. This module lets a run use both:
``--data-source mindvision`` reads the same ``train/`` and ``test/`` IDX files as the default
source through mindvision's ``Mnist``, and ``--net mindvision-lenet`` builds mindvision's LeNet.
mindvision is imported only here, and only when one of them is used; a missing or broken install
is a :class:`~trainer.errors.ConfigError` that says how to fix it.

What mindvision's ``Mnist`` reads: ``path/split/<name>`` with the raw (not gzipped) names
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``. Files are found, downloaded and checked by the same code as for the
default source (the ``mnist`` source's ``prepare`` and :func:`trainer.data.prepare_split`, which
also decompresses ``.gz`` files); mindvision's own download (``download=True``) is never used,
because its server no longer serves MNIST. The raw copies the tool keeps in its cache for gzipped
data are laid out as mindvision expects.

mindvision parses the IDX files in Python into float32 arrays and feeds them one sample at a time
through a ``GeneratorDataset``, so it is slower than ``MnistDataset`` (docs/data-sources.md). Its
pipeline (resize, rescale to [0, 1], normalise with MNIST's mean and deviation, HWC to CHW) gives
the same tensors as the default source: images float32 ``[N, 1, S, S]``, labels int32 ``[N]``.

Example:
    >>> from trainer.data.mindvision import build_dataset
    >>> train = build_dataset(Path("data/mnist/train"), "train", image_size=32, batch_size=32,
    ...                       training=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from trainer.data.idx import SPLIT_FILES
from trainer.errors import DataError
from trainer.extras import import_mindvision

# mindvision's default transforms come from mindspore.dataset.vision.c_transforms, which logs a
# deprecation warning per operation each time a pipeline is built.
_DEPRECATION = "from mindspore.dataset.vision.c_transforms is deprecated"




def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None,
                  shard_id: int | None = None, rows=None, native: int = 28):
    """Builds one split through mindvision's ``Mnist``, with the arguments of the default source.

    Training uses ``Mnist(...).run()`` as the tutorial does (shuffled, last incomplete batch
    dropped). Evaluation applies the same transforms but keeps the last incomplete batch (``run()``
    would drop it), so every test digit is scored, as with the default source.

    Args:
        folder: Folder with the split's raw IDX files (see ``trainer.data.prepare_split``).
        split: ``"train"`` or ``"test"``.
        image_size: Side the network expects; ``Mnist`` resizes to it.
        batch_size: Samples per batch.
        training: Shuffle and drop the last incomplete batch.
        num_workers: Accepted for symmetry and not used: mindvision's ``GeneratorDataset`` with
            more than one worker copies every sample between processes, which costs more than
            the workers save (docs/data-sources.md). Defaults to `2`.
        num_shards: Number of data-parallel workers, or None. Defaults to `None`.
        shard_id: This worker's rank, or None. Defaults to `None`.
        rows: Only these rows of the files (the held-out split, or the rest), in this order.
            Defaults to `None`: all.
        native: The side of the files' images (accepted for symmetry; ``Mnist`` resizes).
            Defaults to `28`.

    Returns:
        A ``mindspore.dataset.Dataset`` yielding ``(image float32 [N,1,S,S], label int32 [N])``.

    Raises:
        ConfigError: mindvision is missing or broken.
        DataError: the folder of links for mindvision cannot be written.
    """
    del num_workers, native  # see the docstring
    datasets = import_mindvision("mindvision.classification.dataset", "--data-source mindvision")
    root = mindvision_root(Path(folder), split)
    with _quiet_deprecations():
        reader = datasets.Mnist(path=str(root), split=split, batch_size=batch_size, repeat_num=1,
                                shuffle=training, num_parallel_workers=1,
                                num_shards=num_shards, shard_id=shard_id, resize=image_size,
                                download=False)
        if rows is not None:
            _keep_rows(reader, rows, training, num_shards, shard_id)
        if training:
            return reader.run()
        reader.transforms()
        return reader.dataset.batch(batch_size, drop_remainder=False)


def _keep_rows(reader, rows, training: bool, num_shards, shard_id) -> None:
    """Makes ``reader`` (mindvision's ``Mnist``) read only ``rows`` of what it parsed, through
    the same kind of dataset it builds itself (its ``GeneratorDataset`` of parsed arrays)."""
    import mindspore.dataset as ds
    from mindvision.dataset.generator import DatasetGenerator

    reader.image, reader.label = reader.image[rows], reader.label[rows]
    reader.dataset = ds.GeneratorDataset(DatasetGenerator(reader.image, reader.label,
                                                          mode=reader.mode),
                                         column_names=list(reader.columns_list),
                                         num_parallel_workers=reader.num_parallel_workers,
                                         shuffle=training, num_shards=num_shards,
                                         shard_id=shard_id)


def mindvision_root(folder: Path, split: str) -> Path:
    """A folder ``root`` such that ``root/split`` holds the split's raw files, as ``Mnist`` wants.

    That is ``folder``'s parent when ``folder`` is itself named after the split, as the folders
    of :func:`trainer.data.prepare_split` and of the held-out split always are; any other folder
    of validated IDX files is given as raw copies in the cache (:func:`trainer.data.splits.
    raw_copies`), never through links that would leave the cache.

    Raises:
        DataError: the files are missing or malformed, or the copies cannot be written.
    """
    if folder.name == split:
        return folder.parent
    from trainer.data.idx import find_split, validate_split
    from trainer.data.splits import raw_copies

    found = find_split(folder, split)
    if found is None:
        raise DataError(f"Folder {folder} does not hold the {split} split's files "
                        f"({', '.join(SPLIT_FILES[split])}). Name the folder that holds them.")
    return raw_copies(found, split, validate_split(*found)).parent


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """Drops MindSpore's deprecation warnings for mindvision's ``c_transforms`` while inside."""
    try:
        from mindspore import log as ms_log

        ms_logger = ms_log._get_logger()
    except (ImportError, AttributeError):  # another MindSpore: nothing to filter
        yield
        return

    def keep(record: logging.LogRecord) -> bool:
        return _DEPRECATION not in record.getMessage()

    ms_logger.addFilter(keep)
    try:
        yield
    finally:
        ms_logger.removeFilter(keep)



