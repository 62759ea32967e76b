"""Optuna, the optional package behind ``mstrain tune``, imported with a message that names the
extra to install when it is missing or broken."""

from __future__ import annotations

import warnings
from types import ModuleType

from trainer.errors import ConfigError
from trainer.extras import extra_hint


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
                f"Install the tune extra with {extra_hint('tune')}, which brings optuna with "
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
                      f"({cause.splitlines()[0]}). Reinstall it with {extra_hint('tune')}, "
                      "which pins a release that works with numpy<2 and this Python.")
