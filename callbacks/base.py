"""The shared wiring of the built-in callbacks: the run's statistics, and checks of saved states."""

from __future__ import annotations

import math
from typing import Any

from mindspore.train import Callback

from callbacks.stats import EpochStats


class StatsCallback(Callback):
    """A callback that reads the epoch's statistics from a shared :class:`EpochStats`.

    Every statistics callback takes part in the epoch-begin snapshot and the host-side step count,
    so each one also works on its own; calls for the same epoch or step are deduplicated, so
    sharing one ``EpochStats`` costs nothing. Subclasses that override a hook call ``super()``.

    Args:
        stats: The run's shared statistics; a private one is made when omitted. Defaults to
            `None`.
    """

    launch_aware = True  # right when a step end covers several steps (stats.launch_steps)

    def __init__(self, stats: EpochStats | None = None) -> None:
        super().__init__()
        self.stats = stats or EpochStats()

    def on_train_begin(self, run_context) -> None:
        self.stats.begin_run(run_context.original_args())

    def on_train_epoch_begin(self, run_context) -> None:
        self.stats.begin_epoch(run_context.original_args())

    def on_train_step_end(self, run_context) -> None:
        self.stats.on_step(run_context.original_args())


class StatefulCallback(StatsCallback):
    """A statistics callback whose state a checkpoint carries, keyed by :attr:`state_key`.

    The engine (``Trainer``) saves every callback's :meth:`state_dict` in each bundle and, on
    resume, checks every saved state (:meth:`check_state`) and then loads them all before the
    first hook runs. So :meth:`on_train_begin` never asks whether the state was restored: a run
    that starts at global step 0 is a new run and starts from :meth:`reset_state` (one instance
    can serve several runs); a resumed run starts at its bundle's step and keeps what was
    loaded. Subclasses override :meth:`reset_state`, :meth:`state_dict`, :meth:`check_state`
    and :meth:`load_state_dict`.

    Args:
        stats: The run's shared statistics; a private one is made when omitted. Defaults to
            `None`.
    """

    @property
    def state_key(self) -> str:
        """The name of this callback's state in a bundle: the class's qualified name. Override it
        when two instances of one class must keep apart states (else the second is saved as
        ``Name#2``, by its place among them)."""
        return type(self).__qualname__

    def reset_state(self) -> None:
        """Starts the saved state afresh, for a new run."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of this callback (JSON: numbers, text, lists, mappings)."""
        return {}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``) without changing anything."""
        if not isinstance(state, dict):
            raise ValueError(f"the state is a {type(state).__name__}, not a mapping")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        self.check_state(state)

    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)
        if self.stats.global_step(run_context.original_args()) == 0:
            self.reset_state()


def state_value(state: dict[str, Any], key: str, kind: str, default: Any = None) -> Any:
    """``state[key]`` checked to be of ``kind`` (``"int"``, ``"number"``, ``"str"``, ``"list"``,
    ``"dict"``), or ``default`` when absent.

    Raises:
        ValueError: naming the key and what it holds.
    """
    if not isinstance(state, dict):
        raise ValueError(f"the state is a {type(state).__name__}, not a mapping")
    if key not in state:
        return default
    value = state[key]
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str),
          "list": isinstance(value, list),
          "dict": isinstance(value, dict)}[kind]
    if value is None and default is None:
        ok = True
    if not ok:
        raise ValueError(f"'{key}' is {value!r:.60} ({type(value).__name__}), expected {kind}")
    if kind == "int" and value is not None and value < 0:
        raise ValueError(f"'{key}' is {value}, expected a count of at least 0")
    return value


def number_rows(rows: Any, key: str) -> list[dict[str, Any]]:
    """A list of mappings from names to numbers (or None), as history rows and records are."""
    if not isinstance(rows, list):
        raise ValueError(f"'{key}' is a {type(rows).__name__}, not a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(
                isinstance(k, str) and (v is None or (isinstance(v, (int, float))
                                                      and not isinstance(v, bool)))
                for k, v in row.items()):
            raise ValueError(f"'{key}[{i}]' is not a mapping of names to numbers")
        epoch = row.get("epoch")
        if epoch is not None and not (isinstance(epoch, int) or
                                      (isinstance(epoch, float) and math.isfinite(epoch))):
            raise ValueError(f"'{key}[{i}].epoch' is {epoch!r}")
    return rows
