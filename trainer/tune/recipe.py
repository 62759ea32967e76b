"""A tuning recipe: the search space, the study's settings and the keys every trial shares.

::

    search:                      # the options each trial draws
      lr: {low: 0.003, high: 0.3, log: true}
      batch_size: [32, 64, 128]
    tune:                        # the study (flags of mstrain tune override them)
      trials: 20
      pruner: median
    net: lenet                   # any other key is a fixed option of every trial
    epochs: 6

The file is read like any recipe (:func:`trainer.config.recipe.read_recipe`: bounded, no tags,
no alias bombs, no duplicate keys) and checked whole before a study is opened: fixed keys against
:class:`~trainer.config.TrainConfig`, the space by :class:`~trainer.tune.space.SearchSpace`, the
settings against their bounds below.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trainer.config import CONFIG_FIELDS, FINGERPRINT_FIELDS, TrainConfig
from trainer.errors import ConfigError, shown
from trainer.fileio import slug
from trainer.tune.space import SearchSpace

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
MAX_ENQUEUED = 1000


def _setting(default: Any, help: str, *, choices: tuple = (), minimum: float | None = None,
             maximum: float | None = None, metavar: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum,
                                            "maximum": maximum, "metavar": metavar})


@dataclass
class TuneSettings:
    """How a study runs: the ``tune`` mapping of a recipe, then the flags of ``mstrain tune``."""

    trials: int = _setting(20, "trials the study holds when it is done (a study continued later "
                           "runs only the missing ones)", minimum=1, maximum=100_000)
    timeout: float = _setting(0.0, "start no new trial after S seconds (0: no limit)",
                              minimum=0.0, metavar="S")
    sampler: str = _setting("tpe", "how trials draw values: tpe (Bayesian), random, or grid "
                            "(every combination)", choices=SAMPLERS)
    sampler_seed: int = _setting(-1, "seed of the sampler (-1: a fresh one); each worker, and "
                                 "a continued study, derive their own from it", minimum=-1,
                                 maximum=2**31 - 1, metavar="N")
    pruner: str = _setting("median", "how poor trials are stopped early: median (below the "
                           "median of earlier trials at the same epoch), hyperband, none",
                           choices=PRUNERS)
    pruner_startup_trials: int = _setting(5, "trials that finish before the median pruner "
                                          "prunes any", minimum=0, maximum=100_000)
    pruner_warmup_epochs: int = _setting(1, "epochs every trial trains before it may be pruned",
                                         minimum=1, maximum=100_000)
    study_name: str = _setting("", "the study's name (default: the recipe's file name); the "
                               "same name continues the same study", metavar="NAME")
    storage: str = _setting("", "database URL of the study (default: sqlite in "
                            "--output-dir/STUDY/study.db); postgresql:// or mysql:// URLs let "
                            "several machines share one study", metavar="URL")
    workers: int = _setting(1, "trial processes on this machine, sharing the study",
                            minimum=1, maximum=64, metavar="N")
    heartbeat_grace: int = _setting(90, "seconds a running trial may go without a heartbeat "
                                    "before another machine fails it and queues it again (the "
                                    "same on every machine of a study)", minimum=10,
                                    maximum=86_400, metavar="S")

    def validate(self) -> TuneSettings:
        """Checks every value against its declaration.

        Raises:
            ConfigError: naming the setting, the value and what is allowed.
        """
        for f in fields(self):
            value, default, meta = getattr(self, f.name), f.default, f.metadata
            expected = type(default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ConfigError(f"Tune setting '{f.name}' is {shown(value)}, but it must be "
                                  f"{_KINDS[expected]} ({meta['help']}).")
            if expected is float and not math.isfinite(value):
                raise ConfigError(f"Tune setting '{f.name}' is {value}; it must be a finite "
                                  "number.")
            if meta["choices"] and value not in meta["choices"]:
                raise ConfigError(f"Tune setting '{f.name}' is {shown(value)}; choose one of "
                                  f"{', '.join(meta['choices'])}.")
            if meta["minimum"] is not None and value < meta["minimum"]:
                raise ConfigError(f"Tune setting '{f.name}' is {shown(value)}, but it must be at "
                                  f"least {meta['minimum']!r} ({meta['help']}).")
            if meta["maximum"] is not None and value > meta["maximum"]:
                raise ConfigError(f"Tune setting '{f.name}' is {shown(value)}, but it must be at "
                                  f"most {meta['maximum']!r} ({meta['help']}).")
            setattr(self, f.name, value)
        if self.study_name and not safe_folder_name(self.study_name):
            raise ConfigError(f"Tune setting 'study_name' is {shown(self.study_name)}; it names "
                              "the folder of the study inside --output-dir, so it must be a "
                              f"plain folder name ({FOLDER_NAME_RULE}).")
        if self.storage and "://" not in self.storage:
            raise ConfigError(f"Tune setting 'storage' is {shown(self.storage)}, which is not a "
                              "database URL. Give one such as sqlite:///runs/study.db, "
                              "postgresql://user:password@host/db or mysql://user@host/db, or "
                              "leave it out for a SQLite file in the study's folder.")
        return self


_KINDS = {int: "a whole number", float: "a number", str: "a string"}
TUNE_FIELDS = {f.name: f for f in fields(TuneSettings)}
FOLDER_NAME_RULE = "no '/', '\\' or NUL, not '.' or '..', at most 200 characters"


def safe_folder_name(name: str) -> bool:
    """Whether ``name`` is one folder inside another: never a path out of it, and a name every
    file system and database URL takes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name
        return False
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
            and len(name) <= 200)


def study_name_of(path: Path) -> str:
    """The study name a recipe file gives by its name, checked to be one safe folder name.

    Raises:
        ConfigError: the file's name does not make one (``...yaml`` gives ``..``).
    """
    name = path.stem
    if not safe_folder_name(name):
        example = slug(name)[:60] if slug(name) != "run" else "my-study"
        raise ConfigError(f"The study is named after the recipe file {str(path)!r}, whose name "
                          f"gives {shown(name)}: not a plain folder name ({FOLDER_NAME_RULE}), "
                          "so it cannot name the study's folder inside --output-dir. Name the "
                          f"study with --study-name (e.g. --study-name {example}) or "
                          "'study_name' under 'tune' in the recipe, or rename the file.")
    return name


@dataclass
class TuneRecipe:
    """A checked tuning recipe."""

    path: Path
    fixed: dict[str, Any]  # options every trial shares: the recipe's other keys and run flags
    space: SearchSpace
    settings: TuneSettings
    enqueue: list[dict[str, Any]]  # points the study tries first, in order
    base: TrainConfig  # the fixed keys with every searched option at its first value
    file_fixed: dict[str, Any] = field(default_factory=dict)  # the fixed keys the file holds
    overrides: dict[str, Any] = field(default_factory=dict)  # the run flags

    @property
    def study_name(self) -> str:
        return self.settings.study_name or study_name_of(self.path)

    @property
    def study_dir(self) -> Path:
        return Path(self.base.output_dir).expanduser() / self.study_name

    @property
    def epochs(self) -> int:
        return self.base.epochs

    def trial_config(self, params: Mapping[str, Any], run_name: str) -> TrainConfig:
        """A trial's configuration: the fixed keys, the drawn values, its run directory.

        Raises:
            ConfigError: the drawn values do not go together (a rule between options).
        """
        values = {**self.fixed, **params, "output_dir": str(self.study_dir), "run_name": run_name}
        return TrainConfig(**values).validate()

    def fingerprint(self) -> dict[str, Any]:
        """What makes two studies' trials comparable: the options that decide training (and are
        not searched), the epochs, the metric, and the space. Paths are left out, so a study
        can be continued from another machine with its data elsewhere."""
        cfg = self.base
        keys = [k for k in (*FINGERPRINT_FIELDS, "epochs", "monitor", "monitor_mode", "net")
                if k not in self.space.names]
        return {"options": {k: getattr(cfg, k) for k in dict.fromkeys(keys)},
                "space": self.space.describe()}

    def recipe_for(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A training recipe for ``params``: the fixed keys of the recipe file, the run flags
        and the drawn values, in the order of TrainConfig's fields. Where runs go and this
        machine's data folder (``--data-dir``) are left out; a data folder the file names stays."""
        flags = {k: v for k, v in self.overrides.items() if k != "data_dir"}
        values = {**self.file_fixed, **flags, **params}
        return {k: values[k] for k in CONFIG_FIELDS if k in values
                and k not in ("output_dir", "run_name")}


def load_tune_recipe(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                     settings: Mapping[str, Any] | None = None) -> TuneRecipe:
    """Reads and checks a tuning recipe.

    Args:
        path: The YAML file.
        overrides: Options from the command line that every trial gets (``--epochs``,
            ``--data-dir``, ...); they win over the file's fixed keys. Defaults to `None`.
        settings: Study settings from the command line; they win over the file's ``tune``
            mapping. Defaults to `None`.

    Raises:
        ConfigError: an unreadable file, an unknown key, a bad fixed value, a bad search space
            (unknown option, empty range, log range touching 0, a value a run refuses), a bad
            setting, or a point to enqueue that the space cannot draw.
    """
    from trainer.config.recipe import read_recipe

    path = Path(path)
    where = f"config file {str(path)!r}"
    data = read_recipe(path)
    if not isinstance(data, dict):
        raise ConfigError(f"The {where} must be a mapping with a 'search' space and fixed "
                          f"options (see configs/tune_lenet.yaml), but it holds a "
                          f"{type(data).__name__ if data is not None else 'nothing'}.")
    known = [*CONFIG_FIELDS, "search", "tune"]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            raise ConfigError(f"Unknown key {shown(key)} in {where}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + ". A tuning recipe holds 'search' (the space), 'tune' (the "
                              "study's settings) and fixed options: " + ", ".join(CONFIG_FIELDS)
                              + ".")
    file_fixed = {k: v for k, v in data.items() if k not in ("search", "tune")}
    fixed = {**file_fixed, **(overrides or {})}
    try:
        TrainConfig(**fixed).validate()  # the fixed keys alone, before the space is read
    except ConfigError as exc:
        raise ConfigError(f"The fixed options of {where} (with the flags) are refused: "
                          f"{exc}") from None
    space = SearchSpace.parse(data.get("search"), fixed, where)
    tune = data.get("tune") or {}
    if not isinstance(tune, dict):
        raise ConfigError(f"'tune' in {where} is {shown(tune)}; it must be a mapping of study "
                          f"settings: {', '.join(TUNE_FIELDS)}, enqueue.")
    enqueue = tune.get("enqueue") or []
    unknown = [k for k in tune if k not in TUNE_FIELDS and k != "enqueue"]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), [*TUNE_FIELDS, "enqueue"], n=1)
        raise ConfigError(f"Unknown tune setting {shown(unknown[0])} in {where}"
                          + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f". Settings: {', '.join(TUNE_FIELDS)}, enqueue.")
    values = {k: v for k, v in tune.items() if k != "enqueue"}
    values.update(settings or {})
    study = replace(TuneSettings(), **values).validate()
    if not isinstance(enqueue, list) or len(enqueue) > MAX_ENQUEUED:
        raise ConfigError(f"'tune.enqueue' in {where} must be a list of at most {MAX_ENQUEUED} "
                          "mappings of searched options to values, the trials to run first.")
    points = [space.check_point(p, f"'tune.enqueue[{i}]' in {where}")
              for i, p in enumerate(enqueue)]
    if not study.study_name:
        study_name_of(path)  # a file name that makes no safe folder is refused here
    if study.sampler == "grid":
        space.grid()  # refuses a space without a finite grid before anything runs
    base = TrainConfig(**{**fixed, **space.first_point()}).validate()
    return TuneRecipe(path=path, fixed=fixed, space=space, settings=study, enqueue=points,
                      base=base, file_fixed=file_fixed, overrides=dict(overrides or {}))
