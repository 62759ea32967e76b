"""``Trainer``: one object that turns a :class:`~trainer.config.TrainConfig` into a training run.

It builds the data pipeline, the network, loss, optimizer (with the learning-rate schedule as a
per-step array) and a ``mindspore.train.Model`` around :class:`~trainer.step.TrainStep`, adds the
default callbacks and the user's, and runs ``Model.fit`` with validation every epoch. The run
directory receives the resolved configuration, checkpoints and the history.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindspore.train import Callback

from callbacks.stats import launch_steps, reached
from trainer import distributed
from trainer.checkpoint import LATEST, Bundle, CheckpointStore, load_bundle, load_into
from trainer.config import TrainConfig, save_config
from trainer.errors import CheckpointError, ConfigError, UserError
from trainer.logs import setup_logging

logger = logging.getLogger("mstrain")

# Parameters a train network has beyond the backbone's weights.
_TRAIN_STATE_PREFIXES = ("moments.", "global_step", "learning_rate", "momentum", "beta1_power",
                         "beta2_power", "moment1.", "moment2.", "train_stats.", "accum.")

# Steps between the workers' exchanges of their stop flags in a data-parallel run: one small
# all-reduce (about 1 ms on CPU) every 10 steps, and a stop within 10 steps of a signal.
_STOP_SYNC_STEPS = 10
_OTHER_WORKER = "a signal to another worker"


class TrainingStopped(UserError):
    """Training ended early for a reason the user must hear about (divergence, interruption)."""


@dataclass
class RunData:
    """The prepared datasets and their sizes."""

    train: Any
    valid: Any
    train_count: int
    test_count: int
    steps_per_epoch: int


class Trainer:
    """Trains a network on MNIST through ``mindspore.train.Model``.

    Args:
        config: The run's configuration; validated here. Defaults to `None`: the defaults.
        **overrides: Option values replacing those in ``config``.

    Raises:
        ConfigError: a value is not allowed.

    Example:
        >>> from trainer import Trainer, TrainConfig
        >>> trainer = Trainer(TrainConfig(data_source="synthetic", epochs=2))  # doctest: +SKIP
        >>> history = trainer.fit(callbacks=[MyCallback()])  # doctest: +SKIP
        >>> history.history["val_accuracy"][-1]  # doctest: +SKIP
        0.97
    """

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        cfg = config if config is not None else TrainConfig()
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                from trainer.config import check_keys

                check_keys({key: value}, "Trainer(...) arguments")
            setattr(cfg, key, value)
        self.config = cfg.validate()
        self.run_dir = self._run_dir()
        self.model = None
        self.network = None
        self.train_network = None
        self.history = None
        self.callbacks: list[Any] = []
        self._data: RunData | None = None
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------ set-up
    def _run_dir(self, when: float | None = None) -> Path:
        cfg = self.config
        stamp = time.strftime('%Y%m%d-%H%M%S', time.localtime(when))
        name = cfg.run_name or f"{_slug(cfg.net)}-{stamp}"
        return Path(cfg.output_dir).expanduser() / name

    def _set_context(self) -> None:
        import mindspore as ms
        import mindspore.dataset as ds
        import numpy as np

        distributed.check_launch(self.config.distributed)
        mode = ms.GRAPH_MODE if self.config.mode == "graph" else ms.PYNATIVE_MODE
        try:
            ms.set_context(mode=mode)
            # The device can be chosen once per process; a second Trainer keeps it.
            if ms.get_context("device_target") != self.config.device:
                ms.set_device(self.config.device)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"Device {self.config.device!r} cannot be used here "
                              f"({str(exc).splitlines()[0]}). This MindSpore build runs on CPU; "
                              "use --device CPU, or install the MindSpore package for your "
                              "accelerator.") from None
        if self.config.distributed:
            # Every worker uses the same seeds: identical initial weights, and one shuffled
            # order of the training set that the shards partition (see _prepare_data).
            cluster = distributed.setup()
            if not cluster.main:
                setup_logging(logging.WARNING, prefix=f"[worker {cluster.rank}] ")
        ms.set_seed(self.config.seed)
        ds.config.set_seed(self.config.seed)
        np.random.seed(self.config.seed)

    def _prepare_data(self, need_train: bool = True) -> RunData:
        from trainer.data import check_batch_size, ensure_data, prepare_split

        build_dataset = _dataset_builder(self.config.data_source)
        cfg = self.config
        if cfg.num_classes < 10:
            raise ConfigError(f"Option 'num_classes' is {cfg.num_classes}, but MNIST has labels "
                              "0-9, so the network needs at least 10 outputs. Use "
                              "--num-classes 10 (the default).")
        root = ensure_data(cfg, progress=sys.stderr.isatty())
        image_size = self._built.image_size
        # The cached pipeline is MindSpore's reader decoding once; mindvision reads on its own.
        extra = ({"cache": cfg.data_cache, "seed": cfg.seed} if cfg.data_source != "mindvision"
                 else {})
        test = prepare_split(root, "test")
        valid = build_dataset(test.folder, "test", image_size=image_size,
                              batch_size=cfg.eval_batch_size, training=False,
                              num_workers=cfg.num_workers, **extra)
        if not need_train:
            return RunData(None, valid, 0, test.count, 0)
        train_split = prepare_split(root, "train")
        # Each worker reads its own shard of the training set; every worker validates on the
        # whole test split, so all report (and act on) the same validation metrics.
        shards = distributed.world_size()
        check_batch_size(cfg.batch_size, train_split.count, shards=shards)
        if shards > 1:
            extra = {**extra, "num_shards": shards, "shard_id": distributed.rank()}
        train = build_dataset(train_split.folder, "train", image_size=image_size,
                              batch_size=cfg.batch_size, training=True,
                              num_workers=cfg.num_workers, **extra)
        return RunData(train, valid, train_split.count, test.count, train.get_dataset_size())

    def _build_network(self) -> None:
        from trainer.networks import build_network

        self._built = build_network(self.config.net, self.config.num_classes)
        self.network = self._built.cell

    def _build_train_network(self, steps_per_epoch: int,
                             lr_values: Sequence[float] | None = None) -> None:
        """The optimizer with its per-step rates, ``TrainStep`` and the evaluation network."""
        import mindspore as ms
        import numpy as np
        from mindspore import nn

        from trainer.schedules import build_schedule
        from trainer.step import TrainStep

        cfg = self.config
        if lr_values is None:
            lr_values = build_schedule(
                cfg.lr_schedule, base_lr=cfg.lr, epochs=cfg.epochs,
                steps_per_epoch=steps_per_epoch, warmup_epochs=cfg.warmup_epochs,
                min_lr=cfg.min_lr, gamma=cfg.lr_gamma, step_size=cfg.lr_step_size,
                milestones=cfg.lr_milestones, power=cfg.lr_power)
            # One entry past the end: after the last step the optimizer (and get_lr) reads index
            # global_step == total steps.
            lr_values = [*lr_values, lr_values[-1]]
        lr = ms.Tensor(np.asarray(lr_values, dtype=np.float32))
        params = self.network.trainable_params()
        if cfg.optimizer == "momentum":
            opt = nn.Momentum(params, lr, cfg.momentum, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            opt = nn.SGD(params, lr, weight_decay=cfg.weight_decay)
        else:
            opt = nn.Adam(params, lr, beta1=cfg.momentum, weight_decay=cfg.weight_decay)
        loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        self.train_network = TrainStep(self.network, loss_fn, opt)
        self._eval_network = nn.WithEvalCell(self.network, loss_fn)

    def _build_model(self, callbacks: Sequence[Any], data: RunData) -> int:
        """Chooses the steps per graph launch, sets up the training data for them and builds
        the ``Model``; returns the steps per launch."""
        from mindspore.train import Accuracy, Loss, Model

        from trainer.config import AUTO_STEPS_PER_LAUNCH, launch_blocker
        from trainer.data import launch_dataset
        from trainer.step import LaunchCounter, LaunchSteps

        cfg = self.config
        unaware = [type(cb).__name__ for cb in callbacks
                   if _sees_steps(cb) and not getattr(cb, "launch_aware", False)]
        blocker = launch_blocker(cfg)
        steps = cfg.steps_per_launch
        if steps == 0:
            steps = 1 if blocker or unaware else AUTO_STEPS_PER_LAUNCH
            if unaware and not blocker:
                logger.info("Launching one step at a time, since callback(s) %s have step "
                            "hooks and do not declare launch_aware = True (see "
                            "--steps-per-launch in the README).", ", ".join(unaware))
        elif steps > 1 and unaware:
            logger.info("Running %d steps per launch: callback(s) %s see one step end per "
                        "launch, with cur_step_num advanced by its steps.", steps,
                        ", ".join(unaware))
        steps = min(steps, data.steps_per_epoch)
        train_network = self.train_network
        if steps > 1:
            data.train = launch_dataset(data.train, steps, cuts=(cfg.log_every,))
            train_network = LaunchSteps(self.train_network)
            self.callbacks.insert(0, LaunchCounter(self.train_network, data.steps_per_epoch))
        self.model = Model(train_network, eval_network=self._eval_network,
                           metrics={"accuracy": Accuracy(), "loss": Loss()},
                           eval_indexes=[0, 1, 2])
        return steps

    def _default_callbacks(self, stats) -> list[Any]:
        from callbacks import (
            CSVLogger,
            EarlyStopping,
            History,
            LearningRateMonitor,
            LossMonitor,
            ProgressBar,
            ReduceLROnPlateau,
            TerminateOnNaN,
        )

        cfg = self.config
        # In a data-parallel run only rank 0 prints and writes; the others keep the history in
        # memory and run the callbacks that decide something (every worker must decide alike).
        main = distributed.is_main()
        self.history = History(self.run_dir if main else None, plot=cfg.plot and main,
                               stats=stats)
        cbs: list[Any] = [TerminateOnNaN(cfg.log_every, stats=stats)]
        if main:
            cbs.append(LossMonitor(cfg.log_every, stats=stats))
        if cfg.progress and main:
            cbs.append(ProgressBar(stats=stats))
        cbs += [self.history, LearningRateMonitor()]
        if cfg.csv_log and main:
            cbs.append(CSVLogger(self.run_dir / "log.csv", stats=stats))
        monitor = dict(monitor=cfg.monitor, mode=cfg.monitor_mode, min_delta=cfg.min_delta,
                       stats=stats)
        if cfg.plateau_patience:
            cbs.append(ReduceLROnPlateau(factor=cfg.plateau_factor,
                                         patience=cfg.plateau_patience, **monitor))
        if cfg.early_stopping_patience:
            cbs.append(EarlyStopping(patience=cfg.early_stopping_patience,
                                     restore_best_weights=cfg.restore_best_weights, **monitor))
        return cbs

    def _meta(self, data: RunData) -> dict[str, Any]:
        cfg = self.config
        return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(),
                "fingerprint_fields": cfg.fingerprint_fields(), "train_count": data.train_count,
                "epochs_planned": cfg.epochs, "workers": distributed.world_size()}

    # --------------------------------------------------------------------- fit
    def fit(self, callbacks: Sequence[Any] = (), resume: str | Path | None = None,
            init_from: str | Path | None = None):
        """Trains with validation on the test split after every epoch.

        Args:
            callbacks: Extra ``mindspore.train.Callback`` objects, run after the defaults and
                before the checkpoint (so their ``state_dict`` is saved). Defaults to `()`.
            resume: ``"auto"`` for the newest valid checkpoint of the run directory, or a
                bundle's path. Defaults to `None`.
            init_from: A checkpoint whose weights (only) start a new run. Defaults to `None`.

        Returns:
            The :class:`callbacks.History` of the run.

        Raises:
            UserError: bad data, configuration or checkpoint, a diverged loss, or an
                interruption (after saving a checkpoint).
        """
        from callbacks import EpochStats, ModelCheckpoint

        setup_logging()
        cfg = self.config
        self._set_context()
        workers = distributed.world_size()
        if cfg.distributed and not cfg.run_name:
            # Rank 0's clock names the run, so every worker resumes from the same folder.
            self.run_dir = self._run_dir(distributed.shared_time(time.time()))
        self._build_network()
        data = self._data = self._prepare_data()
        bundle = self._find_resume(resume) if resume else None
        lr_values = self._check_resume(bundle, data) if bundle else None
        self._build_train_network(data.steps_per_epoch, lr_values)

        stats = EpochStats()
        defaults = self._default_callbacks(stats)
        user = [*self._config_callbacks(), *callbacks]
        self._check_callbacks(user)
        ckpt = None
        if distributed.is_main():  # the weights are the same on every worker
            ckpt = ModelCheckpoint(self.run_dir / "checkpoints",
                                   every_n_epochs=cfg.save_every_epochs,
                                   every_n_steps=cfg.save_every_steps, keep_last=cfg.keep_last,
                                   save_best=cfg.save_best, monitor=cfg.monitor,
                                   mode=cfg.monitor_mode, min_delta=cfg.min_delta,
                                   meta=lambda: self._meta(data), stats=stats)
        stop = _StopOnSignal(self, sync_every=_STOP_SYNC_STEPS if workers > 1 else 0)
        self.callbacks = [stop, *defaults, *user, *([ckpt] if ckpt else [])]
        if ckpt:
            ckpt.state_callbacks = [cb for cb in self.callbacks if cb is not ckpt]
        launch = self._build_model(self.callbacks, data)

        initial_epoch = 0
        if bundle is not None:
            initial_epoch = self._restore(bundle, data, stats)
        elif init_from:
            self._init_weights(init_from)
        if initial_epoch >= cfg.epochs:
            raise ConfigError(f"The checkpoint {bundle.path} has already completed {initial_epoch} "
                              f"epoch(s), and --epochs is {cfg.epochs}: nothing is left to train. "
                              f"Pass a larger --epochs to train longer.")

        if distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        logger.info("Run directory: %s", self.run_dir)
        batch = f"batch {cfg.batch_size}"
        if cfg.distributed:
            batch += (f" per worker x {workers} workers = {cfg.batch_size * workers}"
                      if workers > 1 else " on 1 worker")
        logger.info("Training %s on %d samples (%d steps/epoch, %s), validating on %d; "
                    "%d epoch(s), %s, lr %s (%s), mode %s, %s.", cfg.net, data.train_count,
                    data.steps_per_epoch, batch, data.test_count, cfg.epochs,
                    cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.mode,
                    f"up to {launch} steps per launch" if launch > 1 else "one step per launch")
        with _signals(self):
            try:
                self.model.fit(cfg.epochs, data.train, data.valid, callbacks=self.callbacks,
                               initial_epoch=initial_epoch, dataset_sink_mode=False)
                self.history.wait()
                if workers > 1:
                    # Also a barrier: no worker leaves before rank 0 has written its last files
                    # (msrun ends the others once one exits with an error status). A signal in
                    # the last steps, after the final flag exchange, still ends every worker
                    # alike.
                    if distributed.any_worker(bool(self._stop_signal)):
                        self._stop_signal = self._stop_signal or _OTHER_WORKER
            except UserError:
                raise
            except Exception as exc:
                if distributed.is_peer_failure(exc):
                    raise distributed.peer_failure(
                        exc, f"--resume auto --run-name {self.run_dir.name}") from None
                culprit = _failing_callback(exc, self.callbacks)
                if culprit:
                    traceback.print_exception(exc)
                    raise UserError(f"Callback {culprit} raised {type(exc).__name__}: {exc}. "
                                    "Training stopped; fix the callback (the traceback above "
                                    "shows where), then resume with --resume auto.",
                                    exit_code=1) from exc
                raise
        self._report(ckpt, defaults[0])
        return self.history

    def _report(self, ckpt, nan_guard) -> None:
        if nan_guard.stopped:
            raise TrainingStopped(f"Training stopped: {nan_guard.stopped}. No checkpoint was "
                                  "saved from that point on. Lower the learning rate (--lr), add "
                                  "a warm-up (--warmup-epochs 1), or check the data.", exit_code=1)
        if self._stop_signal and ckpt is None:
            raise TrainingStopped(f"Training interrupted by {self._stop_signal}; worker 0 saved "
                                  "the state and says how to resume.", exit_code=130)
        if self._stop_signal:
            where = ckpt.last_path or "(no checkpoint: no step had completed)"
            raise TrainingStopped(
                f"Training interrupted by {self._stop_signal} after global step "
                f"{ckpt.last_saved_step}; the state was saved to {where}. Resume with the same "
                f"command plus --resume auto --run-name {self.run_dir.name} (or "
                f"Trainer.fit(resume='auto')).", exit_code=130)
        rows = self.history.rows
        if rows and "val_accuracy" in rows[-1] and ckpt is not None:
            last = rows[-1]
            logger.info("Test accuracy: %.4f, test loss: %.4f (epoch %d). Checkpoint: %s",
                        last["val_accuracy"], last.get("val_loss", math.nan), last["epoch"],
                        ckpt.last_path)

    def _config_callbacks(self) -> list[Any]:
        from trainer.networks import import_object

        made = []
        for i, spec in enumerate(self.config.callbacks):
            cls = import_object(spec["class"], what="callback", option=f"callbacks[{i}].class",
                                hint="a mindspore.train.Callback subclass")
            try:
                made.append(cls(**spec["args"]))
            except Exception as exc:  # a user's constructor may fail in any way
                raise ConfigError(f"Callback {spec['class']!r} could not be created with "
                                  f"arguments {spec['args']!r}: {type(exc).__name__}: {exc}") \
                    from None
        return made

    @staticmethod
    def _check_callbacks(callbacks: Sequence[Any]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ConfigError(f"Callback {cb!r} ({type(cb).__name__}) is not a "
                                  "mindspore.train.Callback; subclass it and override the "
                                  "on_train_* / on_eval_* methods you need.")

    # ------------------------------------------------------------------ resume
    def _find_resume(self, resume: str | Path) -> Bundle:
        if str(resume) != "auto":
            return load_bundle(_bundle_path(Path(resume)))
        store = CheckpointStore(self.run_dir / "checkpoints")
        bundle, notes = store.latest()
        for note in notes:
            logger.warning("Skipping a damaged checkpoint: %s", note)
        if bundle is None:
            raise CheckpointError(
                f"--resume auto found no valid checkpoint in {store.folder}"
                + (f" ({len(notes)} damaged)" if notes else "")
                + ". Check --output-dir and --run-name (the run to resume), or start a new run "
                "without --resume."
                + (" Every worker reads the checkpoint itself: across machines, put the output "
                   "directory on a shared filesystem or copy rank 0's run directory to the same "
                   "path on each machine." if distributed.world_size() > 1 else ""))
        if notes:
            logger.warning("Falling back to %s.", bundle.path)
        return bundle

    def _check_resume(self, bundle: Bundle, data: RunData) -> list[float]:
        """Refuses a bundle from a different set-up; returns the learning-rate array to use."""
        meta = bundle.meta
        saved = meta.get("fingerprint_fields", {})
        now = self.config.fingerprint_fields()
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in now
                 if _normalise(saved.get(k)) != _normalise(now[k])]
        if meta.get("train_count") not in (None, data.train_count):
            diffs.append(f"training samples: checkpoint {meta['train_count']}, now "
                         f"{data.train_count}")
        saved_workers, workers = int(meta.get("workers", 1)), distributed.world_size()
        if saved_workers != workers:
            def mode(n: int) -> str:
                return (f"{n} data-parallel workers (msrun --worker_num={n} ... --distributed)"
                        if n > 1 else "one process")

            raise CheckpointError(
                f"Checkpoint {bundle.path} was saved by a run on {mode(saved_workers)}, and this "
                f"run is on {mode(workers)}. The number of workers decides the shards, the steps "
                "per epoch and the data order, so the run cannot continue exactly. Resume it as it "
                "was launched, or start a new run from its weights with --init-from "
                f"{bundle.path} (weights load in either mode).")
        if meta.get("steps_per_epoch") not in (None, data.steps_per_epoch):
            diffs.append(f"steps per epoch: checkpoint {meta['steps_per_epoch']}, now "
                         f"{data.steps_per_epoch}")
        if diffs:
            raise CheckpointError(
                f"Checkpoint {bundle.path} belongs to a different set-up, so resuming would not "
                f"continue that run: {'; '.join(diffs)}. Resume with the original options, or "
                "use --init-from to start a new run from its weights.")
        saved_lr = bundle.params.get("learning_rate")
        if saved_lr is None:
            return None
        values = saved_lr.asnumpy().reshape(-1).tolist()
        total = self.config.epochs * data.steps_per_epoch + 1
        if len(values) < total:
            # Training longer than planned continues at the schedule's last rate.
            values += [values[-1]] * (total - len(values))
        return values

    def _restore(self, bundle: Bundle, data: RunData, stats) -> int:
        from callbacks.checkpoint import restore_states
        from trainer.data import resume_at

        params = dict(bundle.params)
        # The optimizer was built with the checkpoint's rate array (extended when training
        # longer, see _check_resume), so the saved copy is not loaded over it.
        params.pop("learning_rate", None)
        load_into(self.train_network, params, ignore_missing=("learning_rate",),
                  source=bundle.path)
        meta = bundle.meta
        restored = restore_states(self.callbacks, meta.get("callbacks", {}))
        stats.load_state_dict(meta.get("epoch_stats", {}))
        global_step = bundle.global_step
        resume_at(data.train, global_step)
        logger.info("Resumed from %s; restored %s.", bundle.describe(),
                    ", ".join(["weights", "optimizer state", "schedule position", *restored]))
        return bundle.epoch

    def _init_weights(self, path: str | Path) -> None:
        bundle = read_checkpoint(path)
        load_weights(self.network, bundle, net=self.config.net)
        logger.info("Initialised the weights from %s (optimizer state and step start fresh).",
                    bundle.path)

    # --------------------------------------------------------------- evaluate
    @property
    def image_size(self) -> int:
        """Side of the square input the built network expects (after ``load_network``)."""
        return self._built.image_size

    def load_network(self, ckpt: str | Path | Bundle) -> Bundle:
        """Sets up MindSpore, builds the configured network and loads a checkpoint's weights.

        The network (``self.network``) is left in inference mode.

        Args:
            ckpt: A bundle, a plain MindSpore checkpoint, a ``latest.json``, a run directory, or
                a :class:`~trainer.checkpoint.Bundle` already read.

        Returns:
            The checkpoint that was loaded.

        Raises:
            CheckpointError: the checkpoint is missing, damaged or of another network.
        """
        setup_logging()
        self._set_context()
        self._build_network()
        bundle = ckpt if isinstance(ckpt, Bundle) else read_checkpoint(ckpt)
        load_weights(self.network, bundle, net=self.config.net)
        self.network.set_train(False)
        return bundle

    def evaluate(self, ckpt: str | Path, results_dir: str | Path | None = None) -> dict[str, Any]:
        """Evaluates a checkpoint's weights on the test split and writes a report.

        One pass over the test split gives the loss, the accuracy, per-class accuracy and the
        confusion matrix; the table is printed, and ``confusion.png``, ``mistakes.png`` and
        ``evaluation.json`` go into ``results_dir`` (see :mod:`trainer.evaluate`).

        Args:
            ckpt: A bundle, a plain MindSpore checkpoint, a ``latest.json`` or a run directory.
            results_dir: Folder for the report. Defaults to `None`: the checkpoint's run
                directory (the folder holding ``checkpoints/``), or the folder the checkpoint is
                in when it is not part of a run.

        Returns:
            ``{"accuracy", "loss", "count", "correct", "per_class", "confusion_matrix",
            "files"}``.

        Raises:
            CheckpointError: the checkpoint is missing, damaged or of another network.
            ConfigError: the report cannot be written.
        """
        from trainer.evaluate import evaluate_network, format_report, output_folder, write_report

        bundle = self.load_network(ckpt)
        data = self._prepare_data(need_train=False)
        ev = evaluate_network(self.network, data.valid, self.config.num_classes)
        ev.checkpoint, ev.net = str(bundle.path), self.config.net
        logger.info("Checkpoint %s: test accuracy %.4f (%d/%d), test loss %.4f.", bundle.path,
                    ev.accuracy, ev.correct, ev.count, ev.loss)
        logger.info("%s", format_report(ev))
        folder = Path(results_dir) if results_dir else output_folder(bundle.path)
        try:
            files = write_report(ev, folder)
        except OSError as exc:
            raise ConfigError(f"Cannot write the evaluation report into {folder}: "
                              f"{exc.strerror or exc}. Pass --results-dir DIR, a folder you may "
                              "write to.") from None
        logger.info("Wrote %s", ", ".join(str(p) for p in files.values()))
        return {"accuracy": ev.accuracy, "loss": ev.loss, "count": ev.count,
                "correct": ev.correct, "per_class": ev.per_class(),
                "confusion_matrix": ev.matrix.tolist(),
                "files": {k: str(v) for k, v in files.items()}}


def read_checkpoint(path: str | Path) -> Bundle:
    """Reads a checkpoint for its weights (bundle or plain; a ``latest.json`` or run directory)."""
    return load_bundle(_bundle_path(Path(path)), require_meta=False)


def load_weights(network, bundle: Bundle, net: str | None = None) -> None:
    """Loads a checkpoint's weights (not its optimizer state) into ``network``.

    Args:
        network: The cell to load into.
        bundle: The checkpoint, from :func:`read_checkpoint`.
        net: The name ``network`` was built from; when the checkpoint's configuration names
            another, the error says so. Defaults to `None`.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped parameters.
    """
    weights = {k: v for k, v in bundle.params.items()
               if not k.startswith(_TRAIN_STATE_PREFIXES) and not isinstance(v, str)}
    try:
        load_into(network, weights, source=bundle.path)
    except CheckpointError as exc:
        trained = (bundle.meta.get("config") or {}).get("net")
        if net and trained and trained != net:
            raise CheckpointError(f"{exc} This checkpoint was trained with --net {trained}, and "
                                  f"the network built here is {net!r}.") from None
        raise


def _bundle_path(path: Path) -> Path:
    """Accepts a bundle, a ``latest.json``, a checkpoint folder or a run directory."""
    import json

    for folder in (path, path / "checkpoints"):
        if folder.is_dir() and (folder / LATEST).is_file():
            path = folder / LATEST
            break
    if path.name == LATEST and path.is_file():
        try:
            return path.parent / json.loads(path.read_text())["file"]
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"Pointer {path} is damaged; pass a .ckpt file instead, or use "
                                  "--resume auto, which falls back to the newest valid "
                                  "bundle.") from None
    return path


def _dataset_builder(data_source: str):
    """The ``build_dataset`` of a data source: MindSpore's MnistDataset, or mindvision's Mnist.

    Both take the same arguments and yield the same batches (image float32 [N,1,S,S], label int32
    [N]) from the same folder of IDX files.
    """
    if data_source == "mindvision":
        from trainer.mindvision_source import build_dataset
    else:
        from trainer.data import build_dataset
    return build_dataset


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "run"


_STEP_HOOKS = ("on_train_step_begin", "on_train_step_end", "step_begin", "step_end")


def _sees_steps(callback: Any) -> bool:
    """Whether a callback has a step-level training hook of its own (epoch-level hooks are the
    same with any number of steps per launch)."""
    return any(name in vars(callback)
               or getattr(type(callback), name, None) is not getattr(Callback, name, None)
               for name in _STEP_HOOKS)


def _failing_callback(exc: BaseException, callbacks: Sequence[Any]) -> str | None:
    """Names the callback (class and hook) in whose code ``exc`` was raised, if any."""
    ids = {id(cb) for cb in callbacks}
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in ids:
            found = f"{type(owner).__name__}.{frame.f_code.co_name}"
    return found


class _StopOnSignal(Callback):
    """Requests a stop at the next step end after SIGINT/SIGTERM (installed by ``fit``).

    In a data-parallel run the workers must stop after the same step, or those still training
    wait in the next gradient all-reduce for the ones that left. A signal reaches the workers at
    slightly different steps (or only some of them), so with ``sync_every`` the workers share
    their flags every ``sync_every`` steps (one small all-reduce) and all stop when any has one.
    """

    launch_aware = True

    def __init__(self, trainer: Trainer, sync_every: int = 0) -> None:
        super().__init__()
        self.trainer = trainer
        self.sync_every = sync_every

    def on_train_step_end(self, run_context) -> None:
        if not self.sync_every:
            if self.trainer._stop_signal:
                run_context.request_stop()
            return
        cb_params = run_context.original_args()
        if not reached(cb_params.cur_step_num, self.sync_every, launch_steps(cb_params)):
            return
        if distributed.any_worker(bool(self.trainer._stop_signal)):
            self.trainer._stop_signal = self.trainer._stop_signal or _OTHER_WORKER
            run_context.request_stop()


class _signals:
    """First SIGINT/SIGTERM: finish the step, save, exit 130. A second SIGINT: stop at once."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.trainer._stop_signal:
            raise KeyboardInterrupt
        self.trainer._stop_signal = name
        logger.warning("%s received: finishing the current step and saving a checkpoint "
                       "(press Ctrl-C again to stop at once).", name)

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
