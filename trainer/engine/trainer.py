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

from trainer.config import TrainConfig, check_keys
from trainer.engine import distributed, stop
from trainer.engine.announce import log_start, log_summary, network_summary, write_config
from trainer.engine.outcome import OTHER_WORKER, TrainingStopped, report, training_failure
from trainer.engine.stop import StopRequest
from trainer.engine.wiring import check_first, ema_callbacks
from trainer.errors import UserError, redact
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

    ``fit`` trains, ``evaluate`` scores a checkpoint, ``summary`` describes the network; the
    README and docs/training.md show them in use.
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
        self.model = self.network = self.train_network = self.eval_network = None
        self.history = self.data = self.image_size = None
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
            overwrite: Move a run the directory holds aside and start afresh. Defaults to `False`.

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
        """The stages of a run: set-up, data, model, callbacks, restore, fit, test, finish."""
        from trainer.data import prepare_data

        user = check_first(self.config, callbacks)  # set-up: refusals before any data work
        self.prepared = prepare_data(self.config, progress=sys.stderr.isatty(),
                                     source=self.source)
        cluster = distributed.start(self.config)
        claim = self._claim_run_dir(cluster, resume, overwrite)
        try:
            self._build_network(cluster)
            self.data = self._feed_data(cluster)
            run = self._wire_callbacks(cluster, user)
            bundle, lr = self._check_resume(resume, run, cluster)
            if bundle is not None and bundle.epoch >= self.config.epochs:
                from trainer.checkpoint.resume import complete_run

                complete_run(bundle, run.all, self.run_dir, self.config.epochs)
                return self.history
            steps = self._build_model(run, lr)
            initial_epoch = self._restore(bundle, init_from, run)
            if cluster.main:
                write_config(self.resolved_config(), self.run_dir)
            log_start(self.config, self.run_dir, self.data, self.prepared.info.kind, cluster.size,
                      steps, native=getattr(self.network, "native", False))
            self._stop_if_requested()
            return self._fit_test_finish(run, user, initial_epoch, cluster)
        finally:
            if claim is not None:
                claim.release()

    def _claim_run_dir(self, cluster, resume, overwrite: bool):
        """Rank 0 claims the run directory (the others only read it); the claim, or `None`."""
        from trainer.engine.rundir import RunDir

        if self.config.distributed and not self.config.run_name:
            # Rank 0's clock names the run, so every worker resumes from the same folder.
            self.run_dir = run_dir_for(self.config, distributed.shared_time(time.time()))
        return (RunDir.claim(self.run_dir, resume=resume is not None, overwrite=overwrite)
                if cluster.main else None)

    # Model: the network for the data's classes, channels and side, initialised.
    def _build_network(self, cluster) -> None:
        from trainer.networks import build_network
        from trainer.networks.init import apply_init

        cfg, info = self.config, self.prepared.info
        built = build_network(cfg.net, cfg.num_classes or info.num_classes, kernels=cfg.kernels,
                              in_channels=info.channels, image_size=cfg.image_size,
                              native=info.image_size)
        self.network, self.image_size = built.cell, built.image_size
        apply_init(self.network, cfg.init)
        if cluster.main and self.show_summary:
            log_summary(built, cfg.net)

    # Data: this worker's batches at the network's input side.
    def _feed_data(self, cluster):
        from trainer.data import build_run_data
        from trainer.engine.optim import check_run_length

        data = build_run_data(self.config, self.prepared, self.image_size, shards=cluster.size,
                              shard_id=cluster.rank)
        check_run_length(self.config, data.steps_per_epoch)
        self._stop_if_requested()
        return data

    # Callbacks: the defaults, the user's and the checkpoint, which asks the engine for every
    # callback's state when it writes a bundle.
    def _wire_callbacks(self, cluster, user: list):
        from trainer.checkpoint.states import collect_states
        from trainer.engine.wiring import build_callbacks

        run = build_callbacks(self.config, self.run_dir, stop=self.stop, user=user,
                              record=lambda: self._record(self.data),
                              states=lambda: collect_states(self.callbacks), main=cluster.main,
                              workers=cluster.size, sync=distributed.any_worker)
        self.history = run.history
        return run

    def _check_resume(self, resume, run, cluster):
        """The bundle to resume from, checked against this run, and its learning rates; or
        `None` twice for a fresh run."""
        if resume is None:
            return None, None
        from trainer.checkpoint.resume import resume_point
        from trainer.engine.optim import schedule_length

        cfg, data = self.config, self.data
        return resume_point(resume, self.run_dir, cfg.fingerprint_fields(), data, run.all,
                            cluster.size, schedule_length(cfg, data.steps_per_epoch))

    def _build_model(self, run, lr) -> int:
        """The train step, the evaluation network and ``Model``; the steps per launch."""
        from trainer.engine.launch import build_model, choose_steps_per_launch
        from trainer.engine.optim import build_train_cells, learning_rates

        cfg, data = self.config, self.data
        if lr is None:
            lr = learning_rates(cfg, data.steps_per_epoch)
        cells = build_train_cells(cfg, self.network, lr)
        self.train_network, self.eval_network = cells.step, cells.eval_network
        steps = choose_steps_per_launch(cfg, run.all, data.steps_per_epoch, self.network)
        self.model, data.train, counter = build_model(cells, data.train, steps,
                                                      data.steps_per_epoch, (cfg.log_every,))
        self.callbacks = [*([counter] if counter else []), *ema_callbacks(cfg, cells.step),
                          *run.all]
        return steps

    # Fit, test, finish: the trackers hear how the run ended, whatever happened.
    def _fit_test_finish(self, run, user: list, initial_epoch: int, cluster):
        from callbacks.tracking import FAILED, FINISHED, STOPPED
        from trainer.tracking import finish_trackers

        status = FAILED
        try:
            with frozen_garbage():
                self._run_fit(run, user, initial_epoch, cluster.size)
                report(stop_reason=self.stop.reason, nan_stopped=run.nan_guard.stopped,
                       checkpoint=run.checkpoint, history=run.history, epochs=self.config.epochs,
                       run_dir=self.run_dir, validates_on_test=self.data.test is None)
                if self.data.test is not None and cluster.main:
                    self._test(run)
            status = FINISHED
        except TrainingStopped as exc:
            status = STOPPED if exc.exit_code == 130 else FAILED
            raise
        finally:
            run.history.finish()  # the last plot, drawn alongside the final test
            finish_trackers(run.trackers, status, self.run_dir, run.history.test,
                            run.checkpoint)
        return self.history

    def _stop_if_requested(self) -> None:
        """Ends the preparation when a signal has asked for a stop: the signal's
        ``KeyboardInterrupt`` can be lost inside MindSpore's data pipeline, the request not."""
        if self.stop:
            raise KeyboardInterrupt

    def _test(self, run) -> None:
        """Scores the test split once, now that training is over, and records it."""
        from trainer.engine.final_test import final_test

        best = run.checkpoint.best_path if run.checkpoint is not None else None
        results = final_test(self.config, self.network, self.train_network, self.data.test,
                             best, ema=bool(self.config.ema_decay), eval_net=self.eval_network,
                             num_classes=self.num_classes)
        run.history.add_test(results)

    def resolved_config(self) -> TrainConfig:
        """The configuration as config.yaml and the bundles record it: the data folder and run
        name this run uses, and a tracking URI without its credentials (MLflow takes them from
        MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."""
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

        cfg = self.config  # what every bundle records of the run
        return RunRecord(config=self.resolved_config().to_dict(), fingerprint=cfg.fingerprint(),
                         fingerprint_fields=cfg.fingerprint_fields(),
                         train_count=data.train_count, epochs_planned=cfg.epochs,
                         workers=distributed.world_size(), data=self.data_record())

    # Restore: every callback's state and the step's, before the first hook runs.
    def _restore(self, bundle, init_from, run) -> int:
        from trainer.checkpoint.resume import start_point
        from trainer.data import resume_at

        return start_point(bundle, init_from, train_step=self.train_network,
                           network=self.network, callbacks=self.callbacks, stats=run.stats,
                           resume_data=lambda step: resume_at(self.data.train, step),
                           net=self.config.net)

    def summary(self) -> str:
        """The network's layers, output shapes and parameter counts, as text (Keras's)."""
        return network_summary(self.config)

    def _run_fit(self, run, user: list, initial_epoch: int, workers: int) -> None:
        stop.training_started()
        try:
            self.model.fit(self.config.epochs, self.data.train, self.data.valid,
                           callbacks=self.callbacks, initial_epoch=initial_epoch,
                           dataset_sink_mode=False)
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
                 net: str | None = None, recorded: bool = False) -> dict[str, Any]:
        """Evaluates a checkpoint on the test split; see ``evaluate_checkpoint``."""
        from trainer.serving.evaluate import evaluate_checkpoint

        setup_logging()
        return evaluate_checkpoint(ckpt, self.config, results_dir, net=net, source=self.source,
                                   recorded=recorded)
