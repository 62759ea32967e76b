"""The search space of a study: which options a trial draws, from what range or set of values.

A space is read from the ``search`` mapping of a tuning recipe and checked whole before any
trial runs: every key must be an option of :class:`~trainer.config.TrainConfig` that a trial may
vary, every range must hold more than one value (a log range stays above 0), and every end of a
range and every choice must make a configuration that the option's own rules accept, with the
recipe's fixed keys around it. Nothing here imports Optuna: a trial is only asked for values.

Example:
    >>> space = SearchSpace.parse({"lr": {"low": 0.001, "high": 0.1, "log": True},
    ...                            "batch_size": [32, 64]}, fixed={"epochs": 3})
    >>> [p.describe() for p in space.params]
    [{'low': 0.001, 'high': 0.1, 'log': True}, {'choices': [32, 64]}]
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainer.config import CONFIG_FIELDS, TrainConfig, default_of
from trainer.errors import ConfigError, shown
from trainer.limits import TUNE_GRID_MAX_POINTS

# Options a trial may not draw, and why: they say where a trial runs, what the study optimises,
# or hold lists, which are not one value.
NOT_SEARCHABLE = {
    "output_dir": "the study chooses each trial's run directory",
    "run_name": "the study chooses each trial's run directory",
    "data_dir": "every trial of a study trains on the same data",
    "data_source": "every trial of a study trains on the same data",
    "download": "every trial of a study trains on the same data",
    "channels": "every trial of a study trains on the same data",
    "test_split": "every trial of a study trains on the same data",
    "epochs": "every trial trains for the same number of epochs (the pruner stops poor ones "
              "early); set it with the fixed keys or --epochs",
    "monitor": "the study optimises --monitor, the same metric for every trial; set it with the "
               "fixed keys",
    "monitor_mode": "it follows from the metric the study optimises; set it with the fixed keys",
    "distributed": "a study runs its trials as processes of its own (--workers)",
    "device": "every trial of a study runs on the same device",
    "callbacks": "a list of callbacks is not one value; put it with the fixed keys",
    "lr_milestones": "a list of epochs is not one value; put it with the fixed keys",
}
__all__ = ["NOT_SEARCHABLE", "Param", "SearchSpace", "searchable_options"]

SPEC_KEYS = ("low", "high", "log", "step", "choices")
MAX_CHOICES = 100
MAX_GRID_POINTS = 10_000


@dataclass(frozen=True)
class Param:
    """One option a trial draws: a numeric range (``low``..``high``, on a log scale or in
    ``step``s) or a list of ``choices``."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value ``trial`` (an ``optuna.trial.Trial``) draws for this option."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1,
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> dict[str, Any]:
        """The plain form the recipe gives (and the study records)."""
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this option can draw."""
        if self.kind == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step:
            offset = (value - self.low) / self.step
            return abs(offset - round(offset)) < 1e-9
        return True

    def grid_count(self) -> int:
        """How many values :meth:`grid` lists, counted without listing them.

        Raises:
            ConfigError: as :meth:`grid`.
        """
        if self.kind == "categorical":
            return len(self.choices)
        if self.kind == "float" and not self.step:
            self.grid()  # refused there, with an example step
        count = int(math.floor((self.high - self.low) / (self.step or 1) + 1e-9)) + 1
        if count > MAX_GRID_POINTS:
            raise ConfigError(f"--sampler grid: '{self.name}' has {count:,} values, more than "
                              f"the grid's limit of {MAX_GRID_POINTS:,}; give it a larger step "
                              "or use --sampler tpe or random.")
        return count

    def grid(self) -> list:
        """Every value of a finite option, for the grid sampler.

        Raises:
            ConfigError: a float range without a ``step`` (it has no finite set of values), or
                more than :data:`MAX_GRID_POINTS` values.
        """
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "float" and not self.step:
            raise ConfigError(
                f"--sampler grid needs a finite set of values for every option, but "
                f"'{self.name}' is a float range ({self.low} to {self.high}) without a step. Give "
                f"it a 'step' (e.g. {{low: {self.low}, high: {self.high}, step: "
                f"{_nice_step(self.low, self.high)}}}) or 'choices', or use --sampler tpe or "
                "random.")
        count = self.grid_count()
        step = self.step or 1
        values = [self.low + i * step for i in range(count)]
        if self.kind == "int":
            return [int(v) for v in values]
        return [round(v, 12) for v in values]


def _nice_step(low: float, high: float) -> float:
    return float(f"{(high - low) / 10:.1g}")


@dataclass(frozen=True)
class SearchSpace:
    """The options a study's trials draw (see :meth:`parse`)."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def suggest(self, trial) -> dict[str, Any]:
        """The values ``trial`` draws for every option, in the recipe's order."""
        return {p.name: p.suggest(trial) for p in self.params}

    def describe(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.describe() for p in self.params}

    def first_point(self) -> dict[str, Any]:
        """Every option at its first value (the low end of a range, the first choice)."""
        return {p.name: _first(p) for p in self.params}

    def grid(self) -> dict[str, list]:
        """The grid sampler's search space (see :meth:`Param.grid`), once its size is checked.

        Raises:
            ConfigError: an option without a finite set of values, or more combinations than
                :data:`trainer.limits.TUNE_GRID_MAX_POINTS`.
        """
        self.grid_size()
        return {p.name: p.grid() for p in self.params}

    def grid_size(self) -> int:
        """The number of combinations in the grid, counted without listing any.

        Raises:
            ConfigError: as :meth:`grid`.
        """
        counts = [(p.name, p.grid_count()) for p in self.params]
        size = math.prod(count for _, count in counts)
        if size > TUNE_GRID_MAX_POINTS:
            sizes = " x ".join(f"{count:,} ({name})" for name, count in counts[:6])
            sizes += " x ..." if len(counts) > 6 else ""
            raise ConfigError(f"--sampler grid: the grid has {sizes} = {size:,} combinations, "
                              f"more than the limit of {TUNE_GRID_MAX_POINTS:,} (the sampler "
                              "lists every combination in memory, and a study holds at most "
                              f"{TUNE_GRID_MAX_POINTS:,} trials). Give the ranges larger steps "
                              "or fewer choices, or use --sampler tpe or random.")
        return size

    def check_point(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Checks a set of values given for the space (a trial to enqueue).

        Raises:
            ConfigError: a key outside the space, or a value the space cannot draw.
        """
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"{where} is {shown(values)}; give a mapping of searched options "
                              "to values, e.g. {lr: 0.01, batch_size: 32}.")
        for key, value in values.items():
            if key not in self.names:
                raise ConfigError(f"{where} sets {shown(key)}, which is not in the search space "
                                  f"({', '.join(self.names)}). Give values for searched options "
                                  "only; the fixed keys apply to every trial.")
            param = self[key]
            if not param.contains(value):
                raise ConfigError(f"{where} sets '{key}' to {shown(value)}, which the search "
                                  f"space cannot draw ({_spec_text(param)}). Give a value "
                                  "inside it.")
        return dict(values)

    @classmethod
    def parse(cls, search: Any, fixed: Mapping[str, Any], where: str = "the recipe") -> SearchSpace:
        """Reads and checks a ``search`` mapping.

        Args:
            search: Option names to specs: ``{low, high}`` with optional ``log: true`` or
                ``step``, ``{choices: [...]}``, or a bare list of choices.
            fixed: The options every trial shares (the recipe's other keys and the run flags);
                every end of a range and every choice is checked together with them.
            where: What holds the space, for messages. Defaults to `"the recipe"`.

        Raises:
            ConfigError: an unknown key, one a trial may not draw, a key also fixed, an empty
                range, a log range touching 0, or a value the option refuses.
        """
        if not isinstance(search, Mapping) or not search:
            raise ConfigError(f"{where} needs a 'search' mapping of the options to search, e.g. "
                              "search: {lr: {low: 0.001, high: 0.1, log: true}, batch_size: "
                              "[32, 64]}.")
        searchable = searchable_options()
        params = []
        for key, spec in search.items():
            if key not in CONFIG_FIELDS:
                close = difflib.get_close_matches(str(key), searchable, n=1)
                raise ConfigError(
                    f"Unknown option {shown(key)} in the search space of {where}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f". Options a trial can draw: {', '.join(searchable)}.")
            if key in NOT_SEARCHABLE:
                raise ConfigError(f"Option '{key}' cannot be searched: {NOT_SEARCHABLE[key]}. "
                                  f"Remove it from 'search' in {where}.")
            if key in fixed:
                raise ConfigError(f"Option '{key}' is both fixed ({shown(fixed[key])}) and "
                                  f"searched in {where}; keep it in one place: under 'search' "
                                  "to vary it, or as a fixed key (or flag) to hold it.")
            params.append(_parse_param(key, spec, where))
        space = cls(tuple(params))
        space._check_values(fixed, where)
        return space

    def _check_values(self, fixed: Mapping[str, Any], where: str) -> None:
        """Every end of a range and every choice must make a configuration that validates with
        the fixed keys, and so must every option at its first value together."""
        for p in self.params:
            ends = p.choices if p.kind == "categorical" else (p.low, p.high)
            for value in ends:
                _validated({**fixed, p.name: value}, p, value, where)
        _validated({**fixed, **self.first_point()}, None, None, where)


def _first(p: Param) -> Any:
    return p.choices[0] if p.kind == "categorical" else p.low


def _validated(values: dict[str, Any], param: Param | None, value: Any, where: str) -> None:
    try:
        TrainConfig(**values).validate()
    except ConfigError as exc:
        if param is None:
            raise ConfigError(f"The fixed keys of {where}, with every searched option at its "
                              f"first value, do not make a valid run: {exc}") from None
        what = "choice" if param.kind == "categorical" else "range end"
        raise ConfigError(f"The search space of {where} gives '{param.name}' the {what} "
                          f"{shown(value)}, which a run refuses: {exc} Change "
                          f"'{param.name}' under 'search' so that every value it can draw is "
                          "allowed.") from None


def _spec_text(p: Param) -> str:
    if p.kind == "categorical":
        return "one of " + ", ".join(map(repr, p.choices))
    text = f"{p.low} to {p.high}"
    if p.log:
        text += " on a log scale"
    if p.step:
        text += f" in steps of {p.step}"
    return text


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_param(key: str, spec: Any, where: str) -> Param:
    field = CONFIG_FIELDS[key]
    kind = type(default_of(field))
    label = f"'search.{key}' in {where}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{label} is {shown(spec)}; give a range such as {{low: 0.001, high: "
                          "0.1}} (with log: true for a log scale, or a step) or a list of "
                          "choices such as [32, 64, 128].")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(f"{label} has unknown key(s) {', '.join(map(shown, unknown))}; a "
                          f"range takes low, high and optionally log or step, a set of values "
                          "takes choices.")
    if "choices" in spec:
        return _parse_choices(key, spec, label)
    if kind not in (int, float):
        registry = field.metadata.get("registry")
        allowed = (field.metadata.get("choices") or (registry.names() if registry else ())
                   or ((False, True) if kind is bool else ()))
        example = f"[{', '.join(map(str, allowed))}]" if allowed else "[a, b]"
        raise ConfigError(f"{label} is a range, but '{key}' is not a number; list the values "
                          f"to draw instead, e.g. {key}: {example}.")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{label} needs both 'low' and 'high' (it has "
                          f"{', '.join(spec) or 'neither'}).")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if not _number(value) or not math.isfinite(value):
            raise ConfigError(f"{label}: '{name}' is {shown(value)}; it must be a finite number.")
        if kind is int and not float(value).is_integer():
            raise ConfigError(f"{label}: '{name}' is {shown(value)}, but '{key}' takes whole "
                              "numbers.")
    if not isinstance(log, bool):
        raise ConfigError(f"{label}: 'log' is {shown(log)}; it must be true or false.")
    if not low < high:
        raise ConfigError(f"{label} is an empty range: low {low!r} is not below high {high!r}. "
                          f"Give low < high, or put '{key}' with the fixed keys to hold one "
                          "value.")
    if log and low <= 0:
        raise ConfigError(f"{label} is a log range that starts at {low!r}; a log scale never "
                          "reaches 0 or below. Start it above 0 (e.g. low: 1.0e-5), or drop "
                          "'log' for a linear range.")
    if step is not None:
        if log:
            raise ConfigError(f"{label} has both 'log' and 'step'; a range is drawn on a log "
                              "scale or in steps, not both.")
        if not _number(step) or not math.isfinite(step) or step <= 0 or step > high - low:
            raise ConfigError(f"{label}: 'step' is {shown(step)}; it must be a number above 0 "
                              f"and at most high - low ({high - low!r}).")
        if kind is int and not float(step).is_integer():
            raise ConfigError(f"{label}: 'step' is {shown(step)}, but '{key}' takes whole "
                              "numbers.")
    if kind is int:
        return Param(key, "int", int(low), int(high), log, int(step) if step else None)
    return Param(key, "float", float(low), float(high), log,
                 float(step) if step is not None else None)


def _parse_choices(key: str, spec: Mapping[str, Any], label: str) -> Param:
    extra = [k for k in spec if k != "choices"]
    if extra:
        raise ConfigError(f"{label} has 'choices' and {', '.join(extra)}; a set of values takes "
                          "choices only.")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{label}: 'choices' is {shown(choices)}; give a non-empty list of "
                          "values.")
    if len(choices) > MAX_CHOICES:
        raise ConfigError(f"{label} lists {len(choices)} choices, more than {MAX_CHOICES}; use "
                          "a range for a numeric option.")
    for c in choices:
        if not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{label}: the choice {shown(c)} is a {type(c).__name__}; choices "
                              "are single numbers, strings or true/false.")
    seen: list = []
    for c in choices:
        if any(type(c) is type(s) and c == s for s in seen):
            raise ConfigError(f"{label} lists {shown(c)} twice; list each value once.")
        seen.append(c)
    if len(choices) == 1:
        raise ConfigError(f"{label} has a single choice {shown(choices[0])}, so there is "
                          f"nothing to search; put '{key}: {choices[0]}' with the fixed keys.")
    return Param(key, "categorical", choices=tuple(choices))


def searchable_options() -> list[str]:
    """The options a search space may name."""
    return [k for k, f in CONFIG_FIELDS.items()
            if k not in NOT_SEARCHABLE and not isinstance(default_of(f), (list, dict))]

