"""``mstrain tune`` (also ``python -m trainer.tune``): a hyperparameter search with Optuna.

The recipe and the flags are checked whole, search space included, before a study is opened.
With ``--workers 1`` the command runs the trials itself; with ``--workers N`` it opens the study,
starts N worker processes of this same command (each runs trials one after another against the
study's storage and writes to this command's output, every line marked with its number), and
writes the results when they are done.

Signals: the trial processes take SIGINT and SIGTERM as ``train.py`` does (the first stops the
running trial after its current step, with a checkpoint; a second ends the process at once).
Workers run in their own process group, so a Ctrl-C reaches only this command, which passes each
signal on once; a worker whose parent dies (even by SIGKILL) is sent SIGTERM by the kernel.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from trainer.config import CONFIG_FIELDS, default_of
from trainer.errors import EXIT_INTERRUPTED, ConfigError, UserError
from trainer.tune.recipe import TUNE_FIELDS, TuneRecipe, load_tune_recipe

logger = logging.getLogger("mstrain")

# Options of a run that the command line passes to every trial.
RUN_FLAGS = ("data_source", "data_dir", "epochs", "output_dir")

EPILOG = """examples:
  mstrain tune --config configs/tune_lenet.yaml
  mstrain tune --config configs/tune_lenet.yaml --trials 50 --workers 2
  mstrain tune --config configs/tune_lenet.yaml --data-dir ../data/mnist --epochs 3
  mstrain tune --config configs/tune_lenet.yaml --storage postgresql://me@db/studies
  python train.py --config runs/tune_lenet/best.yaml           # train the best trial's recipe
"""


class TuneParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one-paragraph ``ConfigError``s (exit 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        raise ConfigError(f"{message}. Run '{self.prog} --help' for the options.")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str = "mstrain tune") -> TuneParser:
    """The parser of ``mstrain tune``: the recipe, the study's settings, the run flags."""
    parser = TuneParser(prog=prog, usage="%(prog)s --config FILE [options]",
                        description=textwrap.fill(
                            "Search hyperparameters with Optuna: every trial is a training run "
                            "of its own, poor trials are pruned after an epoch, and the best "
                            "trial is written as a recipe (best.yaml).", 79),
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                        argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", required=True,
                        help="tuning recipe: 'search' (the space), 'tune' (settings) and fixed "
                        "options, e.g. configs/tune_lenet.yaml")
    study = parser.add_argument_group("the study (override the recipe's 'tune' mapping)")
    for name, f in TUNE_FIELDS.items():
        meta, default = f.metadata, f.default
        shown = f" (default: {default})" if default not in ("", -1, 0.0) else ""
        study.add_argument(_flag(name), type=type(default), choices=meta["choices"] or None,
                           metavar=meta["metavar"] or (None if meta["choices"] else "N"),
                           help=meta["help"] + shown)
    run = parser.add_argument_group("every trial (override the recipe's fixed options)")
    for name in RUN_FLAGS:
        f = CONFIG_FIELDS[name]
        meta, default = f.metadata, default_of(f)
        run.add_argument(_flag(name), type=type(default), choices=meta.get("choices"),
                         metavar=meta.get("metavar") or (None if meta.get("choices") else "N"),
                         help=meta["help"])
    # A worker started by the command itself: run trials only, then exit.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    return parser


def parse(argv: Sequence[str], prog: str = "mstrain tune") -> tuple[TuneRecipe, argparse.Namespace]:
    """The checked recipe of a command line, and the parsed flags.

    Raises:
        ConfigError: a bad flag, or a bad recipe (see :func:`load_tune_recipe`).
    """
    ns = build_parser(prog).parse_args(list(argv))
    overrides = {k: getattr(ns, k) for k in RUN_FLAGS if hasattr(ns, k)}
    settings = {k: getattr(ns, k) for k in TUNE_FIELDS if hasattr(ns, k)}
    return load_tune_recipe(ns.config, overrides, settings), ns


def main(argv: Sequence[str] | None = None, prog: str = "mstrain tune") -> int:
    """Runs ``mstrain tune``; returns the exit status (0, 2 for a mistake, 130 interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ warnings are noise for users
    try:
        recipe, ns = parse(args, prog)
        from trainer.engine.rundir import check_study_dir

        check_study_dir(recipe.study_dir)  # never a run's, nor inside one: before any import
        worker = getattr(ns, "worker", None)
        trains = worker or recipe.settings.workers == 1
        if trains:
            # Before optuna imports numpy, whose BLAS threads would otherwise take the signals.
            from trainer.engine import stop

            stop.block_signals()
        from trainer.extras import import_optuna

        import_optuna()  # a missing extra is refused before anything starts
        from trainer.tune.study import check_sqlite, default_storage

        check_sqlite(recipe.settings.storage or default_storage(recipe.study_dir))
        if worker:
            return _worker(recipe, worker, getattr(ns, "parent_pid", None))
        if not trains:
            return _parallel(recipe, args)
        return _single(recipe)
    except UserError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stopped: interrupted; the study is kept in its storage. Run the same command to "
              "continue it.", file=sys.stderr)
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------------------ set-up
class _Session:
    """Optuna, the storage and the study of one process."""

    def __init__(self, recipe: TuneRecipe, worker: int = 0) -> None:
        from trainer.extras import import_optuna
        from trainer.logs import setup_logging
        from trainer.tune.study import (
            default_storage,
            mark_study,
            open_storage,
            open_study,
            planned_trials,
            retry_callback,
            unmark_study,
        )

        setup_logging()
        self.optuna = optuna = import_optuna()
        _optuna_logging(optuna)
        self.recipe = recipe
        # The folder and the database were checked by main(), before anything was imported.
        self.url = recipe.settings.storage or default_storage(recipe.study_dir)
        created = mark_study(recipe.study_dir)
        self.retry = retry_callback(optuna)
        try:
            self.storage = open_storage(optuna, self.url, self.retry,
                                        recipe.settings.heartbeat_grace)
            self.study = open_study(optuna, recipe, self.storage, self.url, worker)
        except UserError:
            if created:
                unmark_study(recipe.study_dir)
            raise
        self.planned = planned_trials(recipe)

    def deadline(self) -> float | None:
        timeout = self.recipe.settings.timeout
        return time.time() + timeout if timeout else None

    def banner(self, workers: int) -> None:
        from trainer.tune.study import enqueue_first, progress, shown_url
        from trainer.tune.worker import AskLock

        # Under the ask lock, so that machines starting together queue the points once.
        lock = AskLock(self.recipe.study_dir, self.storage, self.recipe.study_name)
        try:
            enqueue_first(self.study, self.recipe)
        finally:
            lock.release()
        done, s = progress(self.study), self.recipe.settings
        grid = (f" (the grid has {self.planned})" if s.sampler == "grid"
                and self.planned < s.trials else "")
        logger.info("Study %s in %s: %d of %d trial(s) finished%s; %s sampler, %s pruner, "
                    "%s to %s over %d epoch(s); %d worker(s) here; trials in %s.",
                    self.recipe.study_name, shown_url(self.url), done.finished, self.planned,
                    grid, s.sampler, s.pruner, self.recipe.base.monitor,
                    self.study.direction.name.lower(), self.recipe.epochs, workers,
                    self.recipe.study_dir)

    def report(self) -> dict:
        from trainer.tune.results import write_results

        owner = self._results_owner()
        results = write_results(self.optuna, self.study, self.recipe, self.planned, self.url,
                                write=owner is None)
        summary = results.summary
        print(results.table)
        t, best, pruning = summary["trials"], summary["best"], summary["pruning"]
        lines = [f"Study {summary['study']}: {t['finished']} of {t['planned']} trial(s) finished "
                 f"({t['complete']} complete, {t['pruned']} pruned, {t['failed']} failed), "
                 f"{summary['seconds']['trials']:.0f} s of trials; pruning saved "
                 f"{pruning['epochs_saved']} epoch(s), about {pruning['share_saved']:.0%} of "
                 "the trial time."]
        folder = self.recipe.study_dir if owner is None else Path(owner["folder"])
        on = "" if owner is None else f" on {owner['host']}"
        if best is not None:
            test = best.get("test_accuracy")
            lines.append(f"Best: trial {best['trial']}, {summary['monitor']} {best['value']:.4f}"
                         + (f", test accuracy {test:.4f}" if test is not None else "")
                         + f". Recipe: {folder / 'best.yaml'}{on} (python train.py "
                         f"--config {folder / 'best.yaml'}{self._data_flag()}).")
        if owner is None:
            lines.append(f"Table: {folder / 'trials.csv'}; summary and plots in {folder}.")
        else:
            lines.append(f"The study's results (best.yaml, trials.csv, summary.json, plots) "
                         f"were written{on} in {folder}, by the process that found the study "
                         "finished first; nothing was written here.")
        for line in lines:
            print(line)
        return summary

    def _data_flag(self) -> str:
        """``--data-dir`` as the study ran with it: best.yaml leaves the folder to each machine."""
        import shlex

        folder = self.recipe.overrides.get("data_dir")
        return f" --data-dir {shlex.quote(str(folder))}" if folder else ""

    def _results_owner(self) -> dict | None:
        """Who writes a finished study's results: None for this process, else the claim of
        the process on another machine (or in another --output-dir) that does."""
        from trainer.tune.results import claim_results
        from trainer.tune.study import progress
        from trainer.tune.worker import AskLock

        done = progress(self.study)
        if done.finished < self.planned or done.pending:
            return None  # a study stopped part-way: every process reports what it has
        lock = AskLock(self.recipe.study_dir, self.storage, self.recipe.study_name)
        try:
            return claim_results(self.study, self.recipe.study_dir)
        finally:
            lock.release()

    def stopped(self, reason: str) -> UserError:
        from trainer.tune.study import progress

        done = progress(self.study)
        return UserError(f"Tuning interrupted by {reason}: the running trial(s) stopped after "
                         "their current step with a checkpoint, were marked failed and queued "
                         f"again; the study holds {done.finished} of {self.planned} finished "
                         "trial(s). Run the same command to continue the study (the queued "
                         "trials resume from their checkpoints).", exit_code=EXIT_INTERRUPTED)


class _QuietHandled(logging.Filter):
    """Optuna logs a failed trial with its traceback; for the failures the tool handles (a
    refused draw, a signal, a broken run) the message says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        from trainer.tune.objective import HANDLED

        if record.exc_info and isinstance(record.exc_info[1], HANDLED):
            record.exc_info, record.exc_text = None, None
        return "failed with value None" not in record.getMessage()


def _optuna_logging(optuna) -> None:
    """Optuna's messages (a trial finished, pruned, failed) through the tool's log lines."""
    from trainer.logs import TqdmHandler

    log = logging.getLogger("optuna")
    if any(isinstance(h, TqdmHandler) for h in log.handlers):
        return
    optuna.logging.disable_default_handler()
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_QuietHandled())
    log.addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)


def _watch_signals() -> None:
    """Imports the engine with SIGINT and SIGTERM blocked (see :func:`main`), then starts the
    tool's signal watcher, so a signal stops a running trial after its step, and one between
    trials ends the command. A signal that arrives during the imports waits for the watcher:
    interrupting MindSpore's import half-way would crash the interpreter at exit."""
    import mindspore  # noqa: F401

    import callbacks.optuna_pruning  # noqa: F401
    import trainer.engine.trainer  # noqa: F401
    from trainer.engine import stop

    with stop.handling(stop.StopRequest()):
        pass  # starts the watcher thread, which outlives the context


# ------------------------------------------------------------------------------ commands
def _single(recipe: TuneRecipe) -> int:
    _watch_signals()
    session = _Session(recipe)
    session.banner(workers=1)
    from trainer.tune.worker import run_trials

    deadline = session.deadline()
    try:
        outcome, reason = run_trials(session.optuna, recipe, session.study, session.retry,
                                     session.planned, deadline, session.storage)
    except KeyboardInterrupt:
        outcome, reason = "interrupted", "a signal (SIGINT or SIGTERM)"
    except UserError as exc:
        if exc is not getattr(session.storage, "lost", None):  # no report without the study
            session.report()
        raise
    session.report()
    if outcome == "interrupted":
        raise session.stopped(reason or "a signal")
    if outcome == "timeout":
        logger.info("--timeout reached: no new trial was started; run the same command to "
                    "continue the study.")
    return 0


def _worker(recipe: TuneRecipe, index: int, parent: int | None) -> int:
    _die_with_parent(parent)
    sys.stdout = _Prefixed(sys.stdout, f"[worker {index}] ")
    sys.stderr = _Prefixed(sys.stderr, f"[worker {index}] ")
    _watch_signals()
    session = _Session(recipe, worker=index)
    from trainer.tune.worker import run_trials

    try:
        outcome, _ = run_trials(session.optuna, recipe, session.study, session.retry,
                                session.planned, session.deadline(), session.storage, index)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if outcome == "interrupted" else 0


def _die_with_parent(parent: int | None) -> None:
    """Asks the kernel to send this worker SIGTERM when the command that started it ends, however
    it ends, so no trial outlives its study's command."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        raise UserError("The mstrain tune command that started this worker has ended; nothing "
                        "was run.", exit_code=EXIT_INTERRUPTED)


def _parallel(recipe: TuneRecipe, argv: list[str]) -> int:
    session = _Session(recipe)
    n = recipe.settings.workers
    session.banner(workers=n)
    root = str(Path(__file__).resolve().parents[2])  # so the workers import this same trainer/
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    procs: list[subprocess.Popen] = []
    received: list[str] = []

    def forward(signum, frame) -> None:
        received.append(signal.Signals(signum).name)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(1, n + 1):
            cmd = [sys.executable, "-m", "trainer.tune", *argv, "--worker", str(index),
                   "--parent-pid", str(os.getpid())]
            # The workers write to this command's own output (not through pipes, which would
            # break if this process died), each line marked with the worker's number.
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        codes = [proc.wait() for proc in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    from trainer.tune.liveness import fail_dead_trials

    fail_dead_trials(session.study, session.retry)  # trials of workers that were killed
    session.report()
    if received or EXIT_INTERRUPTED in codes:
        what = {"SIGINT": "Ctrl-C (SIGINT)"}.get(received[0], received[0]) if received \
            else "a signal to a worker"
        raise session.stopped(what)
    failed = [(i + 1, c) for i, c in enumerate(codes) if c != 0]
    if failed:
        how = ", ".join(f"worker {i} exited with status {c}" if c > 0 else
                        f"worker {i} was killed by {signal.Signals(-c).name}" for i, c in failed)
        raise UserError(f"Not every worker finished: {how} (its messages are above, marked "
                        "with its number). Its trial was marked failed and queued again; run the "
                        "same command to continue the study.",
                        exit_code=max(c for _, c in failed) if all(c > 0 for _, c in failed)
                        else 1)
    return 0


class _Prefixed:
    """A text stream that starts every line with ``prefix`` (a worker's ``[worker 2] ``)."""

    def __init__(self, stream, prefix: str) -> None:
        self._stream, self._prefix, self._fresh = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self._fresh:
                out.append(self._prefix)
            out.append(piece)
            self._fresh = piece.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str):  # flush, fileno, isatty, encoding: the stream's own
        return getattr(self._stream, name)
