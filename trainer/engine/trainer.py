"""``Trainer``: one object that turns a :class:`~trainer.config.TrainConfig` into a training run.

It orchestrates; the work is done by the pieces it calls in the order of the data flow: the
configuration's network is checked, the data located (:mod:`trainer.data`), MindSpore set up
(:func:`trainer.engine.distributed.start`), the run directory claimed
(:mod:`trainer.engine.rundir`), the network built (:mod:`trainer.networks`), the callbacks
assembled (:mod:`trainer.engine.wiring`), a resume bundle found and checked
(:mod:`trainer.checkpoint.resume`), the loss, optimizer and train step built
(:mod:`trainer.engine.optim`), the launch policy applied (:mod:`trainer.engine.launch`), and
``Model.fit`` run with validation every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, check_keys, save_config
from trainer.engine import distributed, stop
from trainer.engine.outcome import OTHER_WORKER, TrainingStopped, report, training_failure
from trainer.engine.stop import StopRequest
from trainer.errors import OutputError, UserError, os_fault, redact
from trainer.fileio import slug
from trainer.logs import setup_logging

logger = logging.getLogger("mstrain")

__all__ = ["Trainer", "TrainingStopped", "run_dir_for"]


@contextlib.contextmanager
def frozen_garbage():
    """Leaves the objects that exist now out of the garbage collector's passes until the block
    ends. MindSpore runs a full collection before compiling each graph, which would otherwise walk
    every object its import and the run's set-up made, once per graph."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_dir_for(cfg: TrainConfig, when: float | None = None) -> Path:
    """``--output-dir/--run-name``, or ``--output-dir/NET-DATE-TIME`` without a run name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return Path(cfg.output_dir).expanduser() / (cfg.run_name or f"{slug(cfg.net)}-{stamp}")


class Trainer:
    """Trains a network on a data source's images through ``mindspore.train.Model``.

    Args:
        config: The run's configuration; copied and validated here (the caller's object is
            never changed). Defaults to `None`: the defaults.
        source: A data source object (a ``trainer.data.sources.Source``, such as an
            ``ArraySource`` of a notebook's arrays) to train on instead of
            ``config.data_source``. Defaults to `None`.
        **overrides: Option values replacing those in ``config``.

    Attributes:
        stop: The run's :class:`~trainer.engine.stop.StopRequest`: a callback that calls
            ``trainer.stop.request("why")`` stops the run after the current step, with a
            checkpoint, as a signal does.
        show_summary: Whether :meth:`fit` logs the network's summary first. Defaults to `True`.

    Raises:
        ConfigError: a value is not allowed.

    Example:
        >>> from trainer import Trainer, TrainConfig
        >>> trainer = Trainer(TrainConfig(data_source="synthetic", epochs=2))  # doctest: +SKIP
        >>> history = trainer.fit(callbacks=[MyCallback()])  # doctest: +SKIP
        >>> history.history["val_accuracy"][-1]  # doctest: +SKIP
        0.97
    """

    def __init__(self, config: TrainConfig | None = None, source: Any = None,
                 **overrides: Any) -> None:
        check_keys(overrides, "Trainer(...) arguments")
        base = config if config is not None else TrainConfig()
        self.config = dataclasses.replace(base, **overrides).validate()
        self.source = source
        if source is not None:
            from trainer.data.sources import as_source

            as_source(source, "The source given to Trainer")
            self.config.data_source = str(getattr(source, "name", "arrays"))
        self.prepared = None
        self.run_dir = run_dir_for(self.config)
        self.stop = StopRequest()
        self.show_summary = True
        self.model = self.network = self.train_network = self.history = None
        self.eval_network = None
        self.image_size: int | None = None
        self.data = None
        self.callbacks: list[Any] = []

    # --------------------------------------------------------------------- fit
    def fit(self, callbacks: Sequence[Any] = (), resume: str | Path | None = None,
            init_from: str | Path | None = None, overwrite: bool = False):
        """Trains with validation after every epoch.

        Args:
            callbacks: Extra ``mindspore.train.Callback`` objects, run after the defaults and
                before the checkpoint; the state of each one with ``state_dict`` is saved in
                every bundle and restored on resume before the first hook. Defaults to `()`.
            resume: ``"auto"`` for the newest valid checkpoint of the run directory, or a
                bundle's path. Defaults to `None`.
            init_from: A checkpoint whose weights (only) start a new run. Defaults to `None`.
            overwrite: When the run directory holds a run already, move it aside
                (``NAME.replaced-DATE-TIME``) and start afresh. Defaults to `False`.

        Returns:
            The :class:`callbacks.History` of the run.

        Raises:
            UserError: bad data, configuration or checkpoint, a run directory in use or holding
                another run, a diverged loss, or an interruption (after saving a checkpoint).
        """
        setup_logging()
        self.stop.clear()
        with stop.handling(self.stop):
            try:
                return self._fit(list(callbacks), resume, init_from, overwrite)
            except KeyboardInterrupt:
                raise TrainingStopped(
                    f"Training interrupted by {self.stop.reason or 'Ctrl-C (SIGINT)'} while the "
                    "run was being prepared; nothing was trained and no checkpoint was written "
                    "by it. Run the same command again.", exit_code=130) from None

    def _fit(self, callbacks: list, resume, init_from, overwrite: bool):
        from trainer.data import prepare_data
        from trainer.engine.rundir import RunDir
        from trainer.engine.wiring import check_callbacks, config_callbacks
        from trainer.networks import is_builtin, resolve_factory

        cfg = self.config
        if not is_builtin(cfg.net):  # a network that cannot be found fails before any data work
            resolve_factory(cfg.net)
        user = [*config_callbacks(cfg), *callbacks]
        if user:
            check_callbacks(user)
        if cfg.trackers():  # a missing extra is refused before any data work
            from trainer.extras import check_tracking

            check_tracking(cfg.trackers())
        prepared = self.prepared = prepare_data(cfg, progress=sys.stderr.isatty(),
                                                source=self.source)
        cluster = distributed.start(cfg)
        if cfg.distributed and not cfg.run_name:
            # Rank 0's clock names the run, so every worker resumes from the same folder.
            self.run_dir = run_dir_for(cfg, distributed.shared_time(time.time()))
        claim = None
        if cluster.main:  # rank 0 writes the run directory; the others only read it
            claim = RunDir.claim(self.run_dir, resume=resume is not None, overwrite=overwrite)
            if claim.replaced:
                logger.info("Moved the earlier run to %s.", claim.replaced)
        try:
            return self._train(prepared, cluster, user, resume, init_from)
        finally:
            if claim is not None:
                claim.release()

    def _train(self, prepared, cluster, user: list, resume, init_from):
        from callbacks.tracking import FAILED, FINISHED, STOPPED
        from trainer.checkpoint.resume import check_resume, find_resume
        from trainer.checkpoint.states import collect_states
        from trainer.data import build_run_data
        from trainer.engine.launch import build_model, choose_steps_per_launch
        from trainer.engine.optim import (
            build_train_cells,
            check_run_length,
            learning_rates,
            schedule_length,
        )
        from trainer.engine.wiring import build_callbacks
        from trainer.networks import build_network
        from trainer.networks.init import apply_init
        from trainer.tracking import finish_trackers

        cfg = self.config
        info = prepared.info
        built = build_network(cfg.net, cfg.num_classes or info.num_classes, kernels=cfg.kernels,
                              in_channels=info.channels, image_size=cfg.image_size,
                              native=info.image_size)
        self.network, self.image_size = built.cell, built.image_size
        apply_init(self.network, cfg.init)
        if cluster.main and self.show_summary:
            self._log_summary(built)
        data = self.data = build_run_data(cfg, prepared, built.image_size, shards=cluster.size,
                                          shard_id=cluster.rank)
        check_run_length(cfg, data.steps_per_epoch)
        self._stop_if_requested()
        run = build_callbacks(cfg, self.run_dir, stop=self.stop, user=user,
                              record=lambda: self._record(data),
                              states=lambda: collect_states(self.callbacks), main=cluster.main,
                              workers=cluster.size, sync=distributed.any_worker)
        self.history = run.history
        bundle = lr = None
        if resume is not None:
            bundle = find_resume(resume, self.run_dir, callbacks=run.all, workers=cluster.size)
            lr = check_resume(bundle, cfg.fingerprint_fields(), train_count=data.train_count,
                              steps_per_epoch=data.steps_per_epoch,
                              rates=schedule_length(cfg, data.steps_per_epoch),
                              workers=cluster.size)
            if bundle.epoch >= cfg.epochs:
                return self._complete(bundle, run)
        if lr is None:
            lr = learning_rates(cfg, data.steps_per_epoch)
        cells = build_train_cells(cfg, self.network, lr)
        self.train_network, self.eval_network = cells.step, cells.eval_network
        steps = choose_steps_per_launch(cfg, run.all, data.steps_per_epoch)
        self.model, data.train, counter = build_model(cells, data.train, steps,
                                                      data.steps_per_epoch, (cfg.log_every,))
        self.callbacks = [*([counter] if counter else []), *self._ema(cells.step), *run.all]
        initial_epoch = self._start(bundle, init_from, run)
        if cluster.main:
            self._write_config()
        self._log_start(data, cluster.size, steps)
        self._stop_if_requested()
        status = FAILED
        try:
            with frozen_garbage():
                self._run_fit(run, user, initial_epoch, cluster.size)
                report(stop_reason=self.stop.reason, nan_stopped=run.nan_guard.stopped,
                       checkpoint=run.checkpoint, history=run.history, epochs=cfg.epochs,
                       run_dir=self.run_dir, validates_on_test=data.test is None)
                if data.test is not None and cluster.main:
                    self._test(run)
            status = FINISHED
        except TrainingStopped as exc:
            status = STOPPED if exc.exit_code == 130 else FAILED
            raise
        finally:
            finish_trackers(run.trackers, status, self.run_dir, run.history.test,
                            run.checkpoint)
        return self.history

    def _stop_if_requested(self) -> None:
        """Ends the preparation when a signal has asked for a stop. The signal also interrupts
        the main thread, but that ``KeyboardInterrupt`` can be lost when it lands inside
        MindSpore's data pipeline (seen in one CI run of the cache-build fault case); the stop
        request is not."""
        if self.stop:
            raise KeyboardInterrupt

    def _ema(self, step) -> list:
        """The callback that validates with the moving average, when there is one."""
        if not self.config.ema_decay:
            return []
        from callbacks import EMAValidation

        return [EMAValidation(step)]

    def _test(self, run) -> None:
        """Scores the test split once, now that training is over, and records it."""
        from trainer.engine.final_test import final_test

        best = run.checkpoint.best_path if run.checkpoint is not None else None
        results = final_test(self.config, self.network, self.train_network, self.data.test,
                             best, ema=bool(self.config.ema_decay), eval_net=self.eval_network,
                             num_classes=self.num_classes)
        run.history.add_test(results)

    def resolved_config(self) -> TrainConfig:
        """The configuration as config.yaml and the bundles record it: with the values this run
        uses where an option was left to its default (the data folder, the run directory's
        name; what the data source decides, its class count, channels and the network's input
        side, is in the bundles' data record), and a tracking URI's credentials hidden (give
        them to MLflow through MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD
        instead)."""
        return dataclasses.replace(self.config, data_dir=str(self.config.resolved_data_dir()),
                                   run_name=self.run_dir.name,
                                   mlflow_uri=redact(self.config.mlflow_uri))

    @property
    def num_classes(self) -> int:
        """The network's outputs: ``--num-classes``, else the data source's class count."""
        info = self.prepared.info if self.prepared is not None else None
        return self.config.num_classes or (info.num_classes if info else 10)

    def data_record(self) -> dict[str, Any]:
        """What a checkpoint records of the data, for evaluation, prediction and export: the
        source, the kind of images, their channels and side, the class names and the
        normalisation."""
        info = self.prepared.info
        norm = self.data.normalisation if self.data is not None else info.normalisation
        return {"source": self.config.data_source, "kind": info.kind,
                "channels": info.channels, "image_size": self.image_size,
                "num_classes": self.num_classes,
                "class_names": list(info.class_names),
                **(norm.to_dict() if norm is not None else {})}

    def _record(self, data):
        from trainer.checkpoint.meta import RunRecord

        cfg = self.config
        return RunRecord(config=self.resolved_config().to_dict(), fingerprint=cfg.fingerprint(),
                         fingerprint_fields=cfg.fingerprint_fields(),
                         train_count=data.train_count, epochs_planned=cfg.epochs,
                         workers=distributed.world_size(), data=self.data_record())

    def _start(self, bundle, init_from, run) -> int:
        """Restores ``bundle`` (a resume) or loads ``init_from``'s weights; the initial epoch."""
        from trainer.checkpoint import load_weights, read_checkpoint
        from trainer.checkpoint.resume import restore
        from trainer.data import resume_at

        if bundle is not None:
            restored = restore(bundle, self.train_network, self.callbacks, run.stats,
                               lambda step: resume_at(self.data.train, step))
            logger.info("Resumed from %s; restored %s.", bundle.describe(), ", ".join(restored))
            return bundle.epoch
        if init_from:
            weights = read_checkpoint(init_from)
            load_weights(self.network, weights, net=self.config.net)
            logger.info("Initialised the weights from %s (optimizer state and step start "
                        "fresh).", weights.path)
        return 0

    def _complete(self, bundle, run):
        """``--resume`` of a run that has trained its epochs: say so and change nothing."""
        from trainer.checkpoint.states import restore_states

        restore_states(run.all, bundle.meta.callbacks, str(bundle.path))
        logger.info("Run %s is complete: %s has %d of --epochs %d epoch(s) done; nothing to "
                    "train. Pass a larger --epochs to train longer.", self.run_dir,
                    bundle.describe(), bundle.epoch, self.config.epochs)
        return self.history

    def _log_summary(self, built) -> None:
        from trainer.networks.summary import summarize

        text = summarize(built.cell, built.image_size, self.config.net,
                         in_channels=built.in_channels).format()
        for line in text.split("\n"):
            logger.info("%s", line)

    def summary(self) -> str:
        """The configured network's layers in the order they run, their output shapes and
        parameter counts, and the totals (like Keras's ``summary()``), as text."""
        from trainer.device import set_mode_and_device
        from trainer.networks import build_network
        from trainer.networks.summary import summarize

        set_mode_and_device(self.config.mode, self.config.device)
        cfg = self.config
        built = build_network(cfg.net, cfg.num_classes or 10, in_channels=cfg.channels or 1,
                              image_size=cfg.image_size)
        return summarize(built.cell, built.image_size, cfg.net,
                         in_channels=built.in_channels).format()

    def _write_config(self) -> None:
        try:
            save_config(self.resolved_config(), self.run_dir / "config.yaml")
        except OSError as exc:
            raise OutputError(f"Cannot write {self.run_dir / 'config.yaml'}: {os_fault(exc)}. "
                              "Free disk space or choose an --output-dir you may write to; "
                              "nothing was trained.") from None

    def _log_start(self, data, workers: int, steps: int) -> None:
        cfg = self.config
        batch = f"batch {cfg.batch_size}"
        if cfg.distributed:
            batch += (f" per worker x {workers} workers = {cfg.batch_size * workers}"
                      if workers > 1 else " on 1 worker")
        if cfg.accumulate_steps > 1:
            batch += f", {cfg.accumulate_steps} per update"
        noun = "digits" if self.prepared.info.kind == "digits" else "images"
        where = (f"validating on {data.valid_count} {noun} held out of the training files "
                 f"(the test split's {data.test_count} are scored once, at the end)"
                 if data.test is not None else
                 f"validating on the test split's {data.valid_count} {noun} (--val-split 0)")
        logger.info("Run directory: %s", self.run_dir)
        logger.info("Training %s on %d samples (%d steps/epoch, %s), %s; %d epoch(s), %s, lr %s "
                    "(%s), mode %s, %s%s.", cfg.net, data.train_count, data.steps_per_epoch,
                    batch, where, cfg.epochs, cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.mode,
                    "native kernels, " if getattr(self.network, "native", False) else "",
                    f"up to {steps} steps per launch" if steps > 1 else "one step per launch")
        options = [f"{flag} {value}" for flag, value in (
            ("--clip-grad-norm", cfg.clip_grad_norm), ("--clip-grad-value", cfg.clip_grad_value),
            ("--label-smoothing", cfg.label_smoothing), ("--init", "" if cfg.init == "default"
                                                         else cfg.init)) if value]
        if cfg.ema_decay:
            options.append(f"--ema-decay {cfg.ema_decay} (validation, the best checkpoint and "
                           "export use the moving average of the weights)")
        if cfg.augment:
            options.append("--augment")
        if options:
            logger.info("With %s.", ", ".join(options))

    def _run_fit(self, run, user: list, initial_epoch: int, workers: int) -> None:
        stop.training_started()
        try:
            self.model.fit(self.config.epochs, self.data.train, self.data.valid,
                           callbacks=self.callbacks, initial_epoch=initial_epoch,
                           dataset_sink_mode=False)
            run.history.wait()
            if workers > 1 and distributed.any_worker(bool(self.stop)):
                # Also a barrier: no worker leaves before rank 0 has written its last files
                # (msrun ends the others once one exits with an error status). A signal in the
                # last steps, after the final flag exchange, still ends every worker alike.
                self.stop.request(OTHER_WORKER)
        except UserError:
            raise
        except Exception as exc:
            failure = training_failure(exc, user, self.run_dir)
            if failure is exc:
                raise
            raise failure from exc

    # --------------------------------------------------------------- evaluate
    def evaluate(self, ckpt: str | Path, results_dir: str | Path | None = None,
                 net: str | None = None) -> dict[str, Any]:
        """Evaluates a checkpoint on this configuration's test split (or the source object given
        to the trainer) and writes a report (see
        :func:`trainer.serving.evaluate.evaluate_checkpoint`); builds the network the checkpoint
        records unless ``net`` names another."""
        from trainer.serving.evaluate import evaluate_checkpoint

        setup_logging()
        return evaluate_checkpoint(ckpt, self.config, results_dir, net=net, source=self.source)
