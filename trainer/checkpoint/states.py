"""Callbacks' states in a bundle: one keying rule for saving and restoring.

A callback with ``state_dict()`` has its state saved in every bundle under its *state key*: its
``state_key`` attribute when it has one, else its class name, with ``#2``, ``#3``... for the
second and later callbacks that share a key, in the order of the callback list. A callback may
also offer ``check_state(state)``, which refuses a state of the wrong shape (``ValueError`` or
``TypeError``) without changing anything; every state is checked before any is loaded, so a
damaged bundle leaves no callback half-restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.checkpoint.meta import damaged
from trainer.errors import CheckpointError, shown


def keyed(callbacks: Sequence[Any], method: str) -> list[tuple[str, Any]]:
    """``(state key, callback)`` for each callback that has ``method``."""
    counts: dict[str, int] = {}
    out = []
    for cb in callbacks:
        if not callable(getattr(cb, method, None)):
            continue
        base = getattr(cb, "state_key", None) or type(cb).__name__
        counts[base] = counts.get(base, 0) + 1
        out.append((base if counts[base] == 1 else f"{base}#{counts[base]}", cb))
    return out


def collect_states(callbacks: Sequence[Any]) -> dict[str, Any]:
    """``state_dict()`` of every callback that has one, by state key."""
    return {key: cb.state_dict() for key, cb in keyed(callbacks, "state_dict")}


def check_states(callbacks: Sequence[Any], states: dict[str, Any],
                 source: str = "the checkpoint") -> None:
    """Runs every callback's ``check_state`` on its saved state.

    Raises:
        CheckpointError: a state has the wrong shape; the bundle counts as damaged.
    """
    for key, cb in keyed(callbacks, "load_state_dict"):
        check = getattr(cb, "check_state", None)
        if key in states and callable(check):
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
    for key, cb in keyed(callbacks, "load_state_dict"):
        if key not in states:
            continue
        try:
            cb.load_state_dict(states[key])
        except Exception as exc:  # a user's callback may fail in any way
            raise CheckpointError(f"Callback {key} could not restore its state from {source} "
                                  f"({type(exc).__name__}: {exc}; the state was "
                                  f"{shown(states[key])}). Fix its load_state_dict, or start a "
                                  "new run.") from None
        restored.append(key)
    return restored
