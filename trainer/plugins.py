"""Finding what a recipe or a flag names, and checking it is what it claims before any of it runs.

A name such as ``my_pkg.my_mod:Thing`` imports the module ``my_pkg.my_mod`` (your own code, which
Python runs as it imports it, as any ``import`` does) and looks ``Thing`` up in it. Nothing found
that way is called until its kind is checked:

* a callback must be a class that subclasses ``mindspore.train.Callback``; only then is it
  constructed with the recipe's arguments;
* a network must be a class that subclasses ``mindspore.nn.Cell``, or a Python function with a
  ``num_classes`` parameter, and what it returns must be an ``nn.Cell``;
* a data source must be a class that subclasses ``trainer.data.sources.Source``, or a Python
  function, whose parameters are all among the settings the tool gives; what it returns must be
  a ``Source`` (its arrays are checked before training).

So ``os:system``, ``subprocess:run`` or ``subprocess:Popen`` named as a callback or a network
are refused without being called. Checkpoints never name code: a network recorded in a
checkpoint is built only when it is a built-in one, or when you name it yourself with ``--net``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError, shown

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def import_object(spec: str, *, what: str, option: str, hint: str) -> Any:
    """Imports the module of ``pkg.module:attr`` (or ``pkg.module.attr``) and returns ``attr``.

    The current working folder is importable, as it is for ``python -m``. Nothing found is called.

    Raises:
        ConfigError: the name is malformed, the module cannot be imported, or has no such
            attribute.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not _DOTTED.match(module_name or "") or not _DOTTED.match(attr or ""):
        raise ConfigError(f"Option '{option}' is {shown(spec)}; name the {what} as "
                          f"'pkg.module:Name' ({hint}).")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Option '{option}' is {spec!r}, but module {module_name!r} cannot be "
                          f"imported ({exc}). Check the spelling, and that the module is on "
                          "PYTHONPATH or in the current folder.") from None
    except Exception as exc:  # a user's module may fail in any way while it is imported
        raise ConfigError(f"Option '{option}' is {spec!r}, but importing module {module_name!r} "
                          f"failed: {type(exc).__name__}: {exc}. Fix the module (run 'python -c "
                          f"\"import {module_name}\"' to see the traceback).") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            raise ConfigError(f"Option '{option}' is {spec!r}, but module {module_name!r} has no "
                              f"attribute {attr!r}. It defines: {', '.join(names[:20])}.")
        obj = getattr(obj, part)
    return obj


def callback_class(spec: str, option: str) -> type:
    """The ``mindspore.train.Callback`` subclass named by ``spec``; nothing is constructed.

    Raises:
        ConfigError: the name does not lead to a Callback subclass (a function, an instance, any
            other class), naming what it found.
    """
    from mindspore.train import Callback

    found = import_object(spec, what="callback", option=option,
                          hint="a mindspore.train.Callback subclass")
    if not (isinstance(found, type) and issubclass(found, Callback)):
        raise ConfigError(f"Callback {spec!r} is {_kind(found)}, not a mindspore.train.Callback "
                          "subclass, so it was not called. Name a class that subclasses "
                          "mindspore.train.Callback and overrides the on_train_* / on_eval_* "
                          "methods you need.")
    return found


def network_factory(spec: str, option: str = "net") -> Any:
    """The network class or factory function named by ``spec``; nothing is called.

    Raises:
        ConfigError: the name leads to something else than an ``nn.Cell`` subclass or a Python
            function with a ``num_classes`` parameter.
    """
    from mindspore import nn

    hint = "an nn.Cell subclass, or a function taking num_classes and returning an nn.Cell"
    found = import_object(spec, what="network", option=option, hint=hint)
    if isinstance(found, type):
        if issubclass(found, nn.Cell):
            return found
    elif inspect.isfunction(found) and _takes_num_classes(found):
        return found
    what = _kind(found) if callable(found) else f"not callable ({_kind(found)})"
    raise ConfigError(f"Network {spec!r}: {spec.replace(':', '.').rpartition('.')[2]!r} is "
                      f"{what}, so it was not called: --net takes {hint} (a 'num_classes' "
                      "parameter is required).")


def source_factory(spec: str, base: type, settings: tuple[str, ...],
                   option: str = "data_source", base_name: str = "") -> Any:
    """The data source class or factory function named by ``spec``; nothing is called.

    Args:
        spec: ``pkg.module:factory``.
        base: The class a source class must subclass (``trainer.data.sources.Source``).
        settings: The keyword arguments the tool can give a factory.
        option: The option that named it, for messages. Defaults to `"data_source"`.
        base_name: How messages name ``base``. Defaults to `""`: its module and name.

    Raises:
        ConfigError: the name leads to something else than a ``base`` subclass or a Python
            function, or to one with a required parameter the tool cannot give.
    """
    hint = f"a {base_name or base.__module__ + '.' + base.__name__} subclass, or a function " \
           "returning one"
    found = import_object(spec, what="data source", option=option, hint=hint)
    name = spec.replace(":", ".").rpartition(".")[2]
    if not ((isinstance(found, type) and issubclass(found, base)) or inspect.isfunction(found)):
        what = _kind(found) if callable(found) else f"not callable ({_kind(found)})"
        raise ConfigError(f"Data source {spec!r}: {name!r} is {what}, so it was not called: "
                          f"--data-source takes {hint}.")
    missing = [p for p in required_parameters(found) if p not in settings]
    if missing:
        raise ConfigError(f"Data source {spec!r}: {name!r} requires the parameter(s) "
                          f"{', '.join(missing)}, which the tool does not give, so it was not "
                          f"called. A source's factory may take any of: {', '.join(settings)}; "
                          "give the others defaults.")
    return found


def required_parameters(factory: Any) -> list[str]:
    """The parameters of a class's ``__init__`` or a function that have no default (a class
    needs no ``self``)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY,
             inspect.Parameter.POSITIONAL_ONLY)
    return [name for name, p in parameters.items()
            if p.kind in kinds and p.default is inspect.Parameter.empty]


def declared_arguments(factory: Any, available: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``available`` that ``factory`` (a class or function) declares as
    parameters; all of them when it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(available)
    return {k: v for k, v in available.items() if k in parameters
            and parameters[k].kind != inspect.Parameter.POSITIONAL_ONLY}


def _takes_num_classes(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get("num_classes")
    return param is not None and param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                inspect.Parameter.KEYWORD_ONLY)


def _kind(obj: Any) -> str:
    """What ``obj`` is, in words, for a refusal."""
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    if inspect.isbuiltin(obj):
        return f"the built-in function {getattr(obj, '__qualname__', obj)!s}"
    if inspect.isfunction(obj):
        return f"the function {obj.__module__}.{obj.__qualname__}"
    if inspect.ismodule(obj):
        return f"the module {obj.__name__}"
    return f"an object of type {type(obj).__name__}"
