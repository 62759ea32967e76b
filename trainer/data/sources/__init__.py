"""Data sources: each turns a data set into arrays once (see :mod:`.base`).

A built-in source is one module of this package, registered where it is defined with
``@register_source("name", default_dir=..., help=...)``; ``--data-source NAME`` picks it. A
user's own source is named as ``pkg.module:factory`` (a :class:`Source` subclass or a function
returning a :class:`Source`, checked before it is called), and from Python a source object is
given to ``Trainer(config, source=...)``.

A factory receives the settings it declares as parameters, among :data:`SETTINGS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.data.sources.arrays import ArraySource
from trainer.data.sources.base import (
    DIGITS,
    NATURAL,
    Normalisation,
    Source,
    SourceInfo,
    check_arrays,
    check_class_names,
)
from trainer.errors import DataError
from trainer.registry import SOURCES, register_source

__all__ = ["DIGITS", "NATURAL", "SETTINGS", "SOURCES", "ArraySource", "Normalisation", "Source",
           "SourceInfo", "check_arrays", "check_class_names", "make_source", "register_source"]

#: The keyword arguments a source's factory may declare, and what they are.
SETTINGS = ("data_dir", "download", "progress", "seed", "synthetic_train_size",
            "synthetic_test_size", "channels", "image_size", "test_split")


def settings_of(cfg, progress: bool = True) -> dict[str, Any]:
    """The values of :data:`SETTINGS` for a configuration (``data_dir`` resolved)."""
    return {"data_dir": cfg.resolved_data_dir(), "download": cfg.download, "progress": progress,
            "seed": cfg.seed, "synthetic_train_size": cfg.synthetic_train_size,
            "synthetic_test_size": cfg.synthetic_test_size, "channels": cfg.channels,
            "image_size": cfg.image_size, "test_split": cfg.test_split}


def make_source(cfg, source: Any = None, *, progress: bool = True) -> Source:
    """The source a configuration names (or ``source``, an object given from Python).

    Raises:
        ConfigError: a ``pkg.mod:factory`` that cannot be found, or is not a source's factory.
        DataError: the factory fails, or returns something that is not a source.
    """
    from trainer.plugins import declared_arguments, source_factory

    if source is not None:
        return as_source(source, "the source given to Trainer")
    spec = cfg.data_source
    if spec in SOURCES:
        factory = SOURCES.get(spec)
    else:
        factory = source_factory(spec, Source, SETTINGS, base_name="trainer.data.sources.Source")
    arguments = declared_arguments(factory, settings_of(cfg, progress))
    if spec in SOURCES:
        return factory(**arguments)
    try:
        made = factory(**arguments)
    except DataError:
        raise
    except Exception as exc:  # a user's factory may fail in any way; say whose fault it is
        raise DataError(f"Data source {spec!r} failed when called: {type(exc).__name__}: "
                        f"{exc}") from None
    return as_source(made, f"Data source {spec!r}")


def as_source(made: Any, where: str) -> Source:
    """``made`` when it is a :class:`Source`.

    Raises:
        DataError: it is anything else.
    """
    if isinstance(made, Source):
        return made
    raise DataError(f"{where} gave {type(made).__name__}, not a trainer.data.sources.Source. "
                    "Return a Source, e.g. trainer.data.sources.ArraySource((x_train, y_train), "
                    "(x_test, y_test), class_names=[...]).")


def default_dir(name: str) -> Path | None:
    """The data folder a built-in source uses without ``--data-dir``, or None (it needs one)."""
    if name not in SOURCES:
        return None
    folder = SOURCES.info(name, "default_dir")
    return Path(folder) if folder else None
