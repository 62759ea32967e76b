"""``--report-to``: the trackers a run reports to, what they are told about it, and the end of
their record (the test scores, the files, how the run ended)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.registry import TRACKERS, register_tracker

logger = logging.getLogger("mstrain")

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
# The run's files each tracker is given at the end, and what they are.
RUN_FILES = (("history.png", "image"), ("config.yaml", "file"), ("history.json", "file"),
             ("history.csv", "file"), ("log.csv", "file"))
# The callback states that hold a tracker's record of a run, in a bundle's metadata.
MLFLOW_STATE = "MLflowLogger"


def mlflow_store(cfg: TrainConfig) -> tuple[str, str | None]:
    """The tracking URI and, for the default store, the artifact folder of new experiments.

    ``--mlflow-uri``, else ``MLFLOW_TRACKING_URI`` (MLflow's own convention), else a SQLite
    database beside the runs, ``OUTPUT_DIR/mlflow.db``, with artifacts in
    ``OUTPUT_DIR/mlartifacts``.
    """
    import os

    uri = cfg.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri, None
    root = Path(cfg.output_dir).expanduser().resolve()
    return f"sqlite:///{root / MLFLOW_DB}", (root / MLFLOW_ARTIFACTS).as_uri()


def run_tags(cfg: TrainConfig, run_dir: Path) -> dict[str, str]:
    """What a run is, as tracker tags: network, data source, MindSpore, configuration."""
    import mindspore

    return {"mstrain.network": cfg.net, "mstrain.data_source": cfg.data_source,
            "mstrain.mindspore_version": mindspore.__version__,
            "mstrain.fingerprint": cfg.fingerprint(), "mstrain.run_dir": str(run_dir.resolve())}


def build_trackers(cfg: TrainConfig, run_dir: Path, stats, history=None) -> list[Any]:
    """The loggers ``cfg.report_to`` names, for a run in ``run_dir`` (rank 0 only); given the
    run's ``History``, a tracker that joins a resumed run records its earlier epochs."""
    hparams = _hparams(cfg)
    trackers = [TRACKERS.get(name).for_run(cfg, run_dir, stats=stats, history=history,
                                           hparams=hparams)
                for name in cfg.trackers()]
    return trackers


# The trackers, by name (``--report-to``): each makes its logger for a training run, and for
# the results of an evaluation or an export added to the record of the run that saved them.
# ``package`` is what must be installed (checked before anything starts, trainer.extras).
@register_tracker("tensorboard", rank=0, package="tensorboard",
                  help="event files in RUN/tensorboard")
class _TensorBoard:
    @staticmethod
    def for_run(cfg: TrainConfig, run_dir: Path, *, stats, history, hparams):
        from callbacks.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(run_dir / TENSORBOARD_DIR, log_every=cfg.log_every,
                                 hparams=hparams, stats=stats, history=history, managed=True)

    @staticmethod
    def for_serving(cfg: TrainConfig, bundle, run_dir: Path, what: str):
        from callbacks.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(run_dir / TENSORBOARD_DIR, managed=True,
                                 step=bundle_step(bundle))


@register_tracker("mlflow", rank=1, package="mlflow",
                  help="an MLflow run (--mlflow-uri, default sqlite:///OUTPUT_DIR/mlflow.db)")
class _MLflow:
    @staticmethod
    def for_run(cfg: TrainConfig, run_dir: Path, *, stats, history, hparams):
        from callbacks.mlflow_logger import MLflowLogger

        uri, artifacts = mlflow_store(cfg)
        return MLflowLogger(uri, cfg.mlflow_experiment or None, run_name=run_dir.name,
                            tags=run_tags(cfg, run_dir), log_every=cfg.log_every,
                            hparams=hparams, stats=stats, artifact_location=artifacts,
                            history=history, managed=True)

    @staticmethod
    def for_serving(cfg: TrainConfig, bundle, run_dir: Path, what: str):
        from callbacks.mlflow_logger import MLflowLogger

        recorded = recorded_run(bundle)
        uri, artifacts = mlflow_store(cfg)
        if not recorded:
            logger.info("MLflow: %s records no MLflow run; the %s goes into a new run.",
                        bundle.path, what)
        return MLflowLogger(uri, cfg.mlflow_experiment or None, run_name=f"{run_dir.name}-{what}",
                            tags=run_tags(cfg, run_dir), artifact_location=artifacts,
                            attach=True, managed=True, step=bundle_step(bundle), **recorded)


def bundle_step(bundle) -> int:
    """The global step of the bundle an evaluation or export scored: its results go there."""
    return int(getattr(bundle, "global_step", 0) or 0)


def _hparams(cfg: TrainConfig) -> dict[str, Any]:
    """The configuration as hyperparameters, without where the files go."""
    values = cfg.to_dict()
    for key in ("output_dir", "run_name", "progress", "report_to", "mlflow_uri",
                "mlflow_experiment"):
        values.pop(key, None)
    return values


def test_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The test scores of ``final_test`` as tracked metrics: ``test/accuracy`` and
    ``test/loss`` for the final weights, ``test/best_accuracy``... for the best checkpoint."""
    out = {}
    for key, value in results.get("final", {}).items():
        out[f"test/{key.removeprefix('test_')}"] = value
    for key, value in results.get("best", {}).items():
        if key.startswith("test_"):
            out[f"test/best_{key.removeprefix('test_')}"] = value
    return out


def finish_trackers(trackers: Sequence[Any], status: str, run_dir: Path,
                    test: dict[str, Any] | None = None, checkpoint=None) -> None:
    """Ends every tracker's record: the test scores, the run's files and the best (else the
    last) checkpoint; a tracker that fails here is reported and never hides the run's own
    outcome."""
    if not trackers:
        return
    files = [(run_dir / name, kind) for name, kind in RUN_FILES]
    if checkpoint is not None:
        best = checkpoint.best_path if checkpoint.best_path else checkpoint.last_path
        if best is not None:
            files.append((Path(best), "checkpoint"))
    metrics = test_metrics(test or {})
    for tracker in trackers:
        try:
            tracker.finish(status, metrics, files)
        except Exception as exc:  # a tracker must not turn a finished run into a failure
            logger.warning("%s could not end its record: %s: %s", type(tracker).__name__,
                           type(exc).__name__, exc)


def recorded_run(bundle) -> dict[str, str | None]:
    """The MLflow run a bundle's metadata names (``run_id`` and ``run_uid``, checked), or
    ``{}``."""
    from callbacks.mlflow_logger import MLflowLogger

    states = bundle.meta.callbacks if getattr(bundle, "meta", None) is not None else {}
    state = states.get(MLFLOW_STATE) if isinstance(states, dict) else None
    if not isinstance(state, dict):
        return {}
    try:
        MLflowLogger.check_state(state)
    except ValueError as exc:
        logger.warning("MLflow: %s holds a damaged MLflow state (%s); it is not used.",
                       bundle.path, exc)
        return {}
    return {"run_id": state.get("run_id"), "run_uid": state.get("run_uid")}


def report_serving(cfg: TrainConfig, bundle, run_dir: Path, metrics: dict[str, float],
                   files: Sequence[tuple[Path, str]], what: str) -> None:
    """Adds an evaluation's or an export's results to the record of the run that wrote
    ``bundle``: TensorBoard images and scalars at the bundle's step in ``RUN/tensorboard``, and
    the MLflow run the bundle names (a new one when it names none)."""
    trackers = cfg.trackers()  # their packages were checked before the evaluation started
    if not trackers:
        return
    made = [TRACKERS.get(name).for_serving(cfg, bundle, run_dir, what) for name in trackers]
    for tracker in made:
        tracker.finish("FINISHED", metrics, files)
