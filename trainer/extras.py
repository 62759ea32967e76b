"""Optional packages, imported only when a run asks for them, with a message that says how to
install them when they are missing or broken."""

from __future__ import annotations

import importlib
from types import ModuleType

from trainer.errors import ConfigError

INSTALL_HINT = ('pip install "mindvision==0.1.0" "opencv-python-headless<4.11" '
                '"opencv-contrib-python-headless<4.11" (or reinstall this project with '
                'pip install -e .)')


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
