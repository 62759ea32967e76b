"""Callbacks' states in a bundle: one keying rule for saving and restoring.

The engine that runs the callbacks collects and restores their states, whatever their order: a
callback with ``state_dict()`` has its state saved in every bundle under its *state key*: its
``state_key`` when it has one (``callbacks.base.StatefulCallback`` gives its class's qualified
name), else its class's qualified name, with ``#2``, ``#3``... for the second and later callbacks
that share a key, in the order of the callback list. A callback may also offer
``check_state(state)``, which refuses a state of the wrong shape (``ValueError`` or
``TypeError``) without changing anything; every state is checked before any is loaded, so a
damaged bundle leaves no callback half-restored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trainer.checkpoint.meta import damaged
from trainer.errors import CheckpointError, shown


def state_key(callback: Any) -> str:
    """The name of ``callback``'s state in a bundle (before numbering)."""
    return getattr(callback, "state_key", None) or type(callback).__qualname__


def _legacy_key(callback: Any) -> str:
    # Bundles written before keys were qualified names used the plain class name; the two differ
    # only for a class defined inside a function or another class.
    key = state_key(callback)
    return type(callback).__name__ if key == type(callback).__qualname__ else key


def _numbered(callbacks: Sequence[Any], method: str,
              key_of: Callable[[Any], str]) -> list[tuple[str, Any]]:
    counts: dict[str, int] = {}
    out = []
    for cb in callbacks:
        if not callable(getattr(cb, method, None)):
            continue
        base = key_of(cb)
        counts[base] = counts.get(base, 0) + 1
        out.append((base if counts[base] == 1 else f"{base}#{counts[base]}", cb))
    return out


def keyed(callbacks: Sequence[Any], method: str) -> list[tuple[str, Any]]:
    """``(state key, callback)`` for each callback that has ``method``."""
    return _numbered(callbacks, method, state_key)


def _saved(callbacks: Sequence[Any], states: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(key in states, callback)`` for each callback that can load a state ``states`` holds."""
    legacy = _numbered(callbacks, "load_state_dict", _legacy_key)
    out = []
    for (key, cb), (old, _) in zip(keyed(callbacks, "load_state_dict"), legacy):
        if key in states:
            out.append((key, cb))
        elif old in states:
            out.append((old, cb))
    return out


def collect_states(callbacks: Sequence[Any]) -> dict[str, Any]:
    """``state_dict()`` of every callback that has one, by state key.

    Example:
        >>> cbs = [History(), LearningRateMonitor()]  # doctest: +SKIP
        >>> save = ModelCheckpoint("ckpt", states=lambda: collect_states(cbs))  # doctest: +SKIP
        >>> cbs.append(save)  # doctest: +SKIP
    """
    return {key: cb.state_dict() for key, cb in keyed(callbacks, "state_dict")}


def check_states(callbacks: Sequence[Any], states: dict[str, Any],
                 source: str = "the checkpoint") -> None:
    """Runs every callback's ``check_state`` on its saved state.

    Raises:
        CheckpointError: a state has the wrong shape; the bundle counts as damaged.
    """
    for key, cb in _saved(callbacks, states):
        check = getattr(cb, "check_state", None)
        if callable(check):
            try:
                check(states[key])
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise damaged(source, f"the saved state of {key} is off ({exc})") from None


def restore_states(callbacks: Sequence[Any], states: dict[str, Any],
                   source: str = "the checkpoint") -> list[str]:
    """Checks, then loads the saved states; returns the keys that found a callback.

    Raises:
        CheckpointError: a state has the wrong shape, or a callback's ``load_state_dict`` fails.
    """
    check_states(callbacks, states, source)
    restored = []
    for key, cb in _saved(callbacks, states):
        try:
            cb.load_state_dict(states[key])
        except Exception as exc:  # a user's callback may fail in any way
            raise CheckpointError(f"Callback {key} could not restore its state from {source} "
                                  f"({type(exc).__name__}: {exc}; the state was "
                                  f"{shown(states[key])}). Fix its load_state_dict, or start a "
                                  "new run.") from None
        restored.append(key)
    return restored
