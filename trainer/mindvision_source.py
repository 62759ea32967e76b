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
default source (``trainer.data.ensure_data`` and ``prepare_split``, which also decompress ``.gz``
files); mindvision's own download (``download=True``) is never used, because its server no longer
serves MNIST. When the raw copies are not in ``path/split`` (gzipped or read-only data), a folder
of symbolic links gives mindvision the layout it expects.

mindvision parses the IDX files in Python into float32 arrays and feeds them one sample at a time
through a ``GeneratorDataset``, so it is slower than ``MnistDataset`` (see the README). Its
pipeline (resize, rescale to [0, 1], normalise with MNIST's mean and deviation, HWC to CHW) gives
the same tensors as the default source: images float32 ``[N, 1, S, S]``, labels int32 ``[N]``.

Example:
    >>> from trainer.mindvision_source import build_dataset
    >>> train = build_dataset(Path("data/mnist/train"), "train", image_size=32, batch_size=32,
    ...                       training=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from mindspore.train import Callback

from trainer.errors import ConfigError, DataError
from trainer.idx import SPLIT_FILES

INSTALL_HINT = ('pip install "mindvision==0.1.0" "opencv-python-headless<4.11" '
                '"opencv-contrib-python-headless<4.11" (or reinstall this project with '
                'pip install -e .)')

# mindvision's default transforms come from mindspore.dataset.vision.c_transforms, which logs a
# deprecation warning per operation each time a pipeline is built.
_DEPRECATION = "from mindspore.dataset.vision.c_transforms is deprecated"


def import_mindvision(module: str, needed_for: str) -> ModuleType:
    """Imports a mindvision module, turning a missing or broken install into a ConfigError.

    Args:
        module: The module, e.g. ``"mindvision.classification.dataset"``.
        needed_for: What asked for it, for the message, e.g. ``"--data-source mindvision"``.

    Raises:
        ConfigError: mindvision is not installed, or it is installed but fails to import (an
            OpenCV built for numpy 2, a MindSpore without ``c_transforms``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "mindvision":
            raise ConfigError(
                f"{needed_for} needs the package mindvision, which is not installed ({exc}). "
                f"Install it with: {INSTALL_HINT}. Or use --data-source mnist and --net lenet, "
                "which train the same LeNet on the same files without it.") from None
        cause = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken dependency can fail in any way while importing
        cause = f"{type(exc).__name__}: {exc}"
    first_line = cause.splitlines()[0] if cause else cause
    raise ConfigError(
        f"{needed_for} needs mindvision, which is installed but cannot be imported "
        f"({first_line}). mindvision 0.1.0 works with mindspore 2.7.2 (2.8 removed "
        "mindspore.dataset.vision.c_transforms), numpy<2 and OpenCV 4.10 (later OpenCV wheels "
        f"need numpy 2). Fix the environment with: {INSTALL_HINT}. Or use --data-source mnist "
        "and --net lenet, which do not need mindvision.") from None


def build_dataset(folder: Path, split: str, *, image_size: int, batch_size: int, training: bool,
                  num_workers: int = 2, num_shards: int | None = None,
                  shard_id: int | None = None):
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
            more than one worker copies every sample between processes, which made an epoch
            about four times slower here. Defaults to `2`.
        num_shards: Number of data-parallel workers, or None. Defaults to `None`.
        shard_id: This worker's rank, or None. Defaults to `None`.

    Returns:
        A ``mindspore.dataset.Dataset`` yielding ``(image float32 [N,1,S,S], label int32 [N])``.

    Raises:
        ConfigError: mindvision is missing or broken.
        DataError: the folder of links for mindvision cannot be written.
    """
    del num_workers  # see the docstring
    datasets = import_mindvision("mindvision.classification.dataset", "--data-source mindvision")
    root = mindvision_root(Path(folder), split)
    with _quiet_deprecations():
        reader = datasets.Mnist(path=str(root), split=split, batch_size=batch_size, repeat_num=1,
                                shuffle=training, num_parallel_workers=1,
                                num_shards=num_shards, shard_id=shard_id, resize=image_size,
                                download=False)
        if training:
            return reader.run()
        reader.transforms()
        return reader.dataset.batch(batch_size, drop_remainder=False)


def mindvision_root(folder: Path, split: str) -> Path:
    """A folder ``root`` such that ``root/split`` holds the split's raw files, as ``Mnist`` wants.

    That is ``folder``'s parent when ``folder`` is itself named after the split (raw files in
    place); otherwise (decompressed copies in ``train/decompressed`` or in the cache) a folder of
    symbolic links under the cache, keyed by ``folder``'s absolute path.

    Raises:
        DataError: the folder of links cannot be written.
    """
    if folder.name == split:
        return folder.parent
    from trainer.data import cache_root

    source = folder.resolve()
    key = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    root = cache_root() / "mindvision" / key
    target = root / split
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in SPLIT_FILES[split]:
            link = target / name
            if link.is_symlink() and Path(os.readlink(link)) == source / name:
                continue
            temp = target / f".{name}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            os.symlink(source / name, temp)
            os.replace(temp, link)  # atomic: a reader sees the old link or the new one
    except OSError as exc:
        raise DataError(f"Cannot create the folder {target} that shows mindvision the IDX files "
                        f"of {folder}: {exc.strerror or exc}. Set MSTRAIN_CACHE to a folder you "
                        "may write to, or use --data-source mnist.") from None
    return root


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


def lenet(num_classes: int = 10):
    """mindvision's LeNet-5 (``mindvision.classification.models.lenet``), not pretrained.

    Registered as ``--net mindvision-lenet``. It takes 32x32 inputs, like ``--net lenet``.

    Raises:
        ConfigError: mindvision is missing or broken.
    """
    models = import_mindvision("mindvision.classification.models", "--net mindvision-lenet")
    return models.lenet(num_classes=num_classes, pretrained=False)


lenet.image_size = 32


class ValAccMonitor(Callback):
    """mindvision's ``ValAccMonitor``, made to run inside ``Trainer`` and ``Model.fit``.

    mindvision's ``mindvision.engine.callback.ValAccMonitor(model, dataset_val, num_epochs)``
    cannot be used there directly: it needs the ``Model`` and the validation dataset when it is
    created, before ``Trainer.fit`` has built them, and it implements the old ``epoch_end`` /
    ``end`` hooks, which ``Model.fit`` refuses (``ValueError``) in callbacks whose class name it
    does not know. This callback creates mindvision's monitor after the first validation, from
    the run's own evaluation network and validation dataset, and calls its hooks: after each epoch
    it evaluates again (mindvision's own evaluation, about the cost of one validation), prints
    mindvision's lines, and saves ``best.ckpt`` when the accuracy does not decrease.

    It takes only literal arguments, so it also works from the command line:
    ``--callback "trainer.mindvision_source:ValAccMonitor(ckpt_directory='runs/mv-best')"``.

    Args:
        num_epochs: Shown in mindvision's lines. Defaults to `None`: the run's epochs.
        interval: Evaluate every N epochs. Defaults to `1`.
        eval_start_epoch: First epoch to evaluate. Defaults to `1`.
        save_best_ckpt: Save the best weights (a plain MindSpore checkpoint of the train
            network, written by mindvision). Defaults to `True`.
        ckpt_directory: Where ``best_ckpt_name`` goes. Defaults to `"./"` (mindvision's default).
        best_ckpt_name: Defaults to `"best.ckpt"`.
        metric_name: Name of the accuracy in mindvision's lines. Defaults to `"Accuracy"`.

    Raises:
        ConfigError: mindvision is missing or broken, or the run does not validate.

    Example:
        >>> trainer = Trainer(TrainConfig(data_source="mindvision", epochs=3))  # doctest: +SKIP
        >>> trainer.fit(callbacks=[ValAccMonitor(ckpt_directory="runs/mv")])  # doctest: +SKIP
    """

    def __init__(self, num_epochs: int | None = None, interval: int = 1,
                 eval_start_epoch: int = 1, save_best_ckpt: bool = True,
                 ckpt_directory: str = "./", best_ckpt_name: str = "best.ckpt",
                 metric_name: str = "Accuracy") -> None:
        super().__init__()
        self.options: dict[str, Any] = dict(
            num_epochs=num_epochs, interval=interval, eval_start_epoch=eval_start_epoch,
            save_best_ckpt=save_best_ckpt, ckpt_directory=ckpt_directory,
            best_ckpt_name=best_ckpt_name, metric_name=metric_name)
        self.monitor = None
        self._mindvision: ModuleType | None = None

    def on_train_begin(self, run_context) -> None:
        self._mindvision = import_mindvision("mindvision.engine.callback",
                                             "The callback ValAccMonitor")
        self.monitor = None

    def _build(self, cb) -> None:
        from mindspore.train import Accuracy, Model

        if getattr(cb, "valid_dataset", None) is None or getattr(cb, "eval_network", None) is None:
            raise ConfigError("ValAccMonitor needs a run that validates: use it with Trainer.fit, "
                              "or with Model.fit(..., valid_dataset=...).")
        options = dict(self.options)
        if options["num_epochs"] is None:
            options["num_epochs"] = cb.epoch_num
        # WithEvalCell (built by Trainer and by Model) returns (loss, logits, label).
        model = Model(cb.train_network, eval_network=cb.eval_network,
                      metrics={options["metric_name"]: Accuracy()}, eval_indexes=[0, 1, 2])
        self.monitor = self._mindvision.ValAccMonitor(model, cb.valid_dataset,
                                                      dataset_sink_mode=False, **options)

    def on_train_epoch_end(self, run_context) -> None:
        cb = run_context.original_args()
        if self.monitor is None:
            self._build(cb)
        self.monitor.epoch_end(run_context)
        # mindvision's evaluation left the shared backbone in evaluation mode.
        cb.train_network.set_train(True)

    def on_train_end(self, run_context) -> None:
        if self.monitor is not None:
            self.monitor.end(run_context)
