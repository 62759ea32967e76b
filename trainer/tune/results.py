"""What a study leaves in its folder: the best trial as a recipe, a table, a summary and plots.

``best.yaml``
    the best complete trial's options as a training recipe (``train.py --config best.yaml``)
``trials.csv``
    one row per trial: state, value, epochs, test accuracy, drawn values, how it ended, run
``summary.json``
    counts by state, the best trial, trial time and the share of it that pruning saved
``history.png``, ``importances.png``, ``parallel.png``
    Optuna's matplotlib plots: optimisation history, parameter importances (PED-ANOVA, which
    needs no extra package), parallel coordinates

Every file is written to a temporary name and renamed when complete. When several machines
(or ``--output-dir`` folders) share a study, the results of the finished study are written once,
into the folder of the process that found it finished first (:func:`claim_results`); the others
say where.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.errors import OutputError, os_fault
from trainer.fileio import atomic_path, atomic_write_text
from trainer.registry import SOURCES
from trainer.tune.recipe import TuneRecipe

logger = logging.getLogger("mstrain")

PLOTS = {"history.png": "optimisation history", "importances.png": "parameter importances",
         "parallel.png": "parallel coordinates"}
TABLE_ROWS_SHOWN = 40
# The study's record of the process that writes its results: host, folder, and how many trials
# the study held then (a study continued with more trials is written again).
RESULTS_ATTR = "mstrain_results"


@dataclass
class Results:
    """The files written and the numbers of the report."""

    table: str
    summary: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if column == "seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def _rows(study, recipe: TuneRecipe) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        retry_of = t.system_attrs.get("retry_history") or [None]
        rows.append({
            "trial": t.number, "state": t.state.name.lower(),
            recipe.base.monitor: t.value if t.values else None,
            "epochs": attrs.get("epochs"),
            "seconds": round(t.duration.total_seconds(), 3) if t.duration else None,
            "test_accuracy": attrs.get("test_accuracy"),
            **{name: t.params.get(name) for name in recipe.space.names},
            "retry_of": retry_of[-1], "outcome": _outcome(t), "run_dir": attrs.get("run_dir"),
        })
    return rows


def _outcome(trial) -> str:
    state, outcome = trial.state.name, trial.user_attrs.get("outcome", "")
    if state == "WAITING":  # a queued retry holds the attributes of the trial it repeats
        return "queued"
    if state == "RUNNING":
        return "running"
    if state == "FAIL" and outcome in ("", "running"):
        return "its process ended during the trial"
    return outcome


def trials_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows`` (the first :data:`TABLE_ROWS_SHOWN`)."""
    shown = rows[:TABLE_ROWS_SHOWN]
    cells = [[_cell(r.get(c), c) for c in columns] for r in shown]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more in trials.csv")
    return "\n".join(line.rstrip() for line in lines)


def claim_results(study, folder: Path) -> dict[str, Any] | None:
    """Decides whether this process writes the results of its finished study: yes (None) when no
    other process has claimed them for the trials the study holds now, or the claim is this
    machine's and this folder's (the same command run again); else the other's claim
    (``host``, ``folder``). Call it under the study's ask lock, so two processes finding the
    study finished at once do not both claim it."""
    import socket

    from trainer.engine.rundir import absolute

    mine = {"host": socket.gethostname(), "folder": str(absolute(folder)),
            "trials": len(study.get_trials(deepcopy=False))}
    claim = study.user_attrs.get(RESULTS_ATTR)
    if (isinstance(claim, dict) and claim.get("trials") == mine["trials"]
            and (claim.get("host"), claim.get("folder")) != (mine["host"], mine["folder"])
            and isinstance(claim.get("host"), str) and isinstance(claim.get("folder"), str)):
        return claim
    if claim != mine:
        study.set_user_attr(RESULTS_ATTR, mine)
    return None


def write_results(optuna, study, recipe: TuneRecipe, planned: int, url: str,
                  write: bool = True) -> Results:
    """Writes the study's results into its folder and returns the table and summary.

    Args:
        write: Write the files; with `False`, only the table and summary are made (another
            process writes them). Defaults to `True`.

    Raises:
        OutputError: the folder cannot be written.
    """
    folder = recipe.study_dir
    rows = _rows(study, recipe)
    columns = list(rows[0]) if rows else ["trial", "state"]
    table_columns = [c for c in columns if c not in ("run_dir", "retry_of")]
    if not write:
        summary = _summary(study, recipe, planned, _best(study), url)
        return Results(trials_table(rows, table_columns), summary)
    files: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(folder / "trials.csv", buffer.getvalue())
        files.append(folder / "trials.csv")
        best = _best(study)
        if best is not None:
            atomic_write_text(folder / "best.yaml", best_recipe(recipe, study, best))
            files.append(folder / "best.yaml")
        summary = _summary(study, recipe, planned, best, url)
        files += _plots(optuna, study, folder, summary)
        atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
        files.append(folder / "summary.json")
    except OSError as exc:
        raise OutputError(f"Cannot write the study's results into {folder}: {os_fault(exc)}. "
                          "Free disk space or make the folder writable, then run the same "
                          "command again (the study itself is kept in its storage).") from None
    return Results(trials_table(rows, table_columns), summary, files)


def _best(study):
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def best_recipe(recipe: TuneRecipe, study, best) -> str:
    """``best.yaml``: the best trial's options, checked to make a valid configuration."""
    import yaml

    values = recipe.recipe_for(best.params)
    # best.yaml leaves the data folder to each machine; the study's own stands in for the check.
    here = values.get("data_dir") or recipe.overrides.get("data_dir") or ""
    TrainConfig(**{**values, "data_dir": here}).validate()
    source = values.get("data_source", "mnist")
    needs_dir = (not values.get("data_dir") and source in SOURCES
                 and SOURCES.info(source, "needs_dir", False))
    test = best.user_attrs.get("test_accuracy")
    lines = [f"# The best trial of study {study.study_name!r}: trial {best.number}, "
             f"{recipe.base.monitor} {best.value:.4f}"
             + (f" (epoch {best.user_attrs['best_epoch']})" if best.user_attrs.get("best_epoch")
                else "")
             + (f", test accuracy {test:.4f}" if test is not None else "") + ".",
             f"# Its run: {best.user_attrs.get('run_dir', '?')}",
             f"# Searched: {', '.join(recipe.space.names)}; fixed: the rest.",
             "# python train.py --config best.yaml" + (" --data-dir DIR" if needs_dir else "")
             + "   (flags override any value here)"]
    return "\n".join(lines) + "\n" + yaml.safe_dump(values, sort_keys=False)


def _summary(study, recipe: TuneRecipe, planned: int, best, url: str) -> dict[str, Any]:
    from trainer.tune.study import progress, shown_url

    trials = study.get_trials(deepcopy=False)
    count = progress(study)
    finished = [t for t in trials if t.state.is_finished()]
    spent = sum(t.duration.total_seconds() for t in finished if t.duration)
    saved_epochs, saved_seconds = _saved_by_pruning(trials, recipe.epochs)
    starts = [t.datetime_start for t in finished if t.datetime_start]
    ends = [t.datetime_complete for t in finished if t.datetime_complete]
    summary: dict[str, Any] = {
        "study": study.study_name, "storage": shown_url(url),
        "monitor": recipe.base.monitor, "direction": study.direction.name.lower(),
        "epochs": recipe.epochs, "sampler": recipe.settings.sampler,
        "pruner": recipe.settings.pruner,
        "trials": {"planned": planned, "finished": count.finished, "complete": count.complete,
                   "pruned": count.pruned, "failed": count.failed, "pending": count.pending,
                   "all": len(trials)},
        "seconds": {"trials": round(spent, 3),
                    "study": round((max(ends) - min(starts)).total_seconds(), 3)
                    if starts and ends else 0.0},
        "pruning": {"epochs_saved": saved_epochs, "seconds_saved": round(saved_seconds, 3),
                    "share_saved": round(saved_seconds / (spent + saved_seconds), 4)
                    if spent + saved_seconds > 0 else 0.0},
        "best": None, "plots": {},
    }
    if best is not None:
        summary["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                           "epochs": best.user_attrs.get("epochs"),
                           "best_epoch": best.user_attrs.get("best_epoch"),
                           "test_accuracy": best.user_attrs.get("test_accuracy"),
                           "test_accuracy_final": best.user_attrs.get("test_accuracy_final"),
                           "run_dir": best.user_attrs.get("run_dir")}
    return _finite(summary)


def _saved_by_pruning(trials, epochs: int) -> tuple[int, float]:
    """The epochs pruned trials did not train, and an estimate of their time: each at the
    trial's own time per epoch after the first (which also compiles), or, for a trial pruned
    after one epoch, the median of that time over the other trials."""
    import statistics

    steady = [t.user_attrs["epoch_seconds"] for t in trials
              if isinstance(t.user_attrs.get("epoch_seconds"), (int, float))]
    typical = statistics.median(steady) if steady else None
    epochs_saved, seconds = 0, 0.0
    for t in trials:
        run = t.user_attrs.get("epochs")
        if t.state.name != "PRUNED" or not isinstance(run, int):
            continue
        left = max(epochs - run, 0)
        per_epoch = t.user_attrs.get("epoch_seconds") or typical \
            or t.user_attrs.get("first_epoch_seconds") or 0.0
        epochs_saved += left
        seconds += left * per_epoch
    return epochs_saved, seconds


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plots(optuna, study, folder: Path, summary: dict[str, Any]) -> list[Path]:
    """Draws Optuna's matplotlib plots; a plot the study cannot have yet is skipped, with the
    reason in the summary."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    from matplotlib import pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as vis

    complete = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    draws = {"history.png": lambda: vis.plot_optimization_history(study),
             "importances.png": lambda: vis.plot_param_importances(
                 study, evaluator=PedAnovaImportanceEvaluator()),
             "parallel.png": lambda: vis.plot_parallel_coordinate(study)}
    needs = {"history.png": 1, "importances.png": 2, "parallel.png": 2}
    written = []
    for name, draw in draws.items():
        if complete < needs[name]:
            summary["plots"][name] = f"skipped: needs {needs[name]} complete trial(s)"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
            figure = getattr(axes, "figure", None) or axes.flat[0].figure
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            with atomic_path(folder / name, suffix=".png") as tmp:
                figure.savefig(tmp, format="png", dpi=100)
            plt.close(figure)
        except OSError:
            raise
        except Exception as exc:  # a plot must never lose the study's other results
            summary["plots"][name] = f"skipped: {type(exc).__name__}: {exc}"
            logger.warning("Could not draw the %s plot: %s", PLOTS[name], exc)
            plt.close("all")
            continue
        summary["plots"][name] = str(folder / name)
        written.append(folder / name)
    return written
