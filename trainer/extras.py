"""Optional packages, imported only when a run asks for them, with a message that says how to
install them when they are missing or broken."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType

from trainer.errors import ConfigError
from trainer.registry import TRACKERS

#: Every optional package the tool imports, and the extra of setup.cfg that brings it (None:
#: a pinned dependency of the tool itself, reinstalled with its own pins).
EXTRAS: dict[str, str | None] = {
    "tensorboard": "tracking", "mlflow": "tracking", "optuna": "tune", "psycopg": "tune",
    "onnxruntime": "onnx", "mindvision": None,
}
# mindvision's working set: the release that runs on this MindSpore, and OpenCV built for numpy<2.
_MINDVISION_HINT = ('pip install "mindvision==0.1.0" "opencv-python-headless<4.11" '
                    '"opencv-contrib-python-headless<4.11" (or reinstall this project with '
                    'pip install -e .)')


def install_hint(package: str) -> str:
    """The command that installs ``package`` (a key of :data:`EXTRAS`) for this installation:
    its extra from the checkout the tool runs from (how the README installs it), else by name."""
    extra = EXTRAS[package]
    if extra is None:
        return _MINDVISION_HINT
    root = Path(__file__).resolve().parents[1]
    if (root / "setup.cfg").is_file():
        where = "." if root == Path.cwd().resolve() else str(root)
        return f'pip install -e "{where}[{extra}]"'
    return f'pip install "mstrain[{extra}]"'


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
                f"Install it with: {install_hint('mindvision')}. Or use --data-source mnist and "
                "--net lenet, which train the same LeNet on the same files without it.") from None
        cause = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken dependency can fail in any way while importing
        cause = f"{type(exc).__name__}: {exc}"
    first_line = cause.splitlines()[0] if cause else cause
    raise ConfigError(
        f"{needed_for} needs mindvision, which is installed but cannot be imported "
        f"({first_line}). mindvision 0.1.0 works with mindspore 2.7.2 (2.8 removed "
        "mindspore.dataset.vision.c_transforms), numpy<2 and OpenCV 4.10 (later OpenCV wheels "
        f"need numpy 2). Fix the environment with: {install_hint('mindvision')}. Or use "
        "--data-source mnist and --net lenet, which do not need mindvision.") from None


def _missing_tracking(tracker: str, needed_for: str, cause: str) -> ConfigError:
    return ConfigError(
        f"{needed_for} needs the package {_package(tracker)}, which is not installed "
        f"({cause}). Install the tracking extra with {install_hint(_package(tracker))}, which "
        "brings tensorboard and mlflow in releases that work with numpy<2; or leave --report-to "
        "out (the run directory keeps history.json, history.csv and history.png either way).")


def check_tracking(trackers: list[str] | tuple[str, ...], needed_for: str = "--report-to") -> None:
    """Refuses, before anything starts, a tracker whose package is not installed (found without
    importing it: MLflow alone takes seconds to import).

    Raises:
        ConfigError: naming the package and the extra that brings it.
    """
    import importlib.util

    for tracker in trackers:
        module = _package(tracker)
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None, a broken package
            found = False
        if not found:
            raise _missing_tracking(tracker, f"{needed_for} {tracker}",
                                    f"no module named {module!r}")


def _package(tracker: str) -> str:
    """The module a tracker needs (its registry entry's ``package``)."""
    return TRACKERS.info(tracker, "package") or tracker


def import_tensorboard(needed_for: str) -> ModuleType:
    """The pieces of TensorBoard's writer and reader this tool uses (the same ones
    ``torch.utils.tensorboard`` uses), imported now, as one namespace: ``EventFileWriter``,
    ``RecordWriter``, ``RawEventFileLoader``, ``event_pb2``, ``summary_pb2``, ``hparams`` (its
    summary_v2), ``hparams_metadata``, ``hparams_api``, ``plugin_data_pb2``. (MLflow is imported
    by the process that talks to it, ``callbacks/mlflow_child.py``.)

    Raises:
        ConfigError: tensorboard is missing or fails to import.
    """
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from tensorboard.plugins.hparams import summary_v2 as hparams
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "tensorboard":
            raise _missing_tracking("tensorboard", needed_for, str(exc)) from None
        cause = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken install can fail in any way while importing
        cause = f"{type(exc).__name__}: {exc}"
    else:
        return _namespace(
            EventFileWriter=EventFileWriter, RecordWriter=RecordWriter,
            RawEventFileLoader=RawEventFileLoader, event_pb2=event_pb2,
            summary_pb2=summary_pb2, hparams=hparams, hparams_metadata=metadata,
            hparams_api=api_pb2, plugin_data_pb2=plugin_data_pb2)
    raise ConfigError(f"{needed_for} needs tensorboard, which is installed but cannot be "
                      f"imported ({cause.splitlines()[0]}). Reinstall it with "
                      f"{install_hint('tensorboard')}, which pins releases that work with numpy<2 "
                      "and this Python.")


def _namespace(**pieces) -> ModuleType:
    space = ModuleType("mstrain_tensorboard")
    space.__dict__.update(pieces)
    return space


def import_optuna(needed_for: str = "mstrain tune") -> ModuleType:
    """Imports optuna, quietening its notes on experimental features this tool relies on
    (heartbeats, the constant liar, the matplotlib plots).

    Raises:
        ConfigError: optuna is not installed, or it is installed but fails to import.
    """
    try:
        import optuna
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("optuna", "sqlalchemy", "alembic"):
            raise ConfigError(
                f"{needed_for} needs the package optuna, which is not installed ({exc}). "
                f"Install the tune extra with {install_hint('optuna')}, which brings optuna with "
                "its database storage; the plots use matplotlib, which the tool already has. "
                "Training alone (mstrain train) does not need it.") from None
        cause = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken install can fail in any way while importing
        cause = f"{type(exc).__name__}: {exc}"
    else:
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # A retried trial keeps the epochs its earlier attempt reported; one that has to train
        # from the start (on another machine) reports them again, and Optuna keeps the first.
        warnings.filterwarnings("ignore", message="The reported value is ignored because",
                                category=UserWarning)
        return optuna
    raise ConfigError(f"{needed_for} needs optuna, which is installed but cannot be imported "
                      f"({cause.splitlines()[0]}). Reinstall it with {install_hint('optuna')}, "
                      "which pins a release that works with numpy<2 and this Python.")
