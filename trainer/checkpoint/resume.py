"""Continuing a run exactly from a bundle: finding it, checking it belongs to this set-up, and
restoring each piece (weights and optimizer, callbacks, statistics, the data order)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.checkpoint.bundle import Bundle, load_bundle, load_into
from trainer.checkpoint.resolve import resolve_checkpoint
from trainer.checkpoint.states import check_states, restore_states
from trainer.checkpoint.store import CheckpointStore
from trainer.errors import CheckpointError

logger = logging.getLogger("mstrain")


def find_resume(resume: str | Path, run_dir: Path, *, callbacks: Sequence[Any] = (),
                workers: int = 1) -> Bundle:
    """The bundle ``--resume`` names: ``"auto"`` for the newest valid bundle of ``run_dir``
    (passing over damaged ones with a warning), or a path (a ``.ckpt``, ``latest.json`` or run
    directory).

    A bundle whose callback states do not fit ``callbacks`` counts as damaged too.

    Raises:
        CheckpointError: no valid bundle, or the named one is damaged.
    """
    def accept(bundle: Bundle) -> None:
        check_states(callbacks, bundle.meta.callbacks, str(bundle.path))

    if str(resume) != "auto":
        bundle = load_bundle(resolve_checkpoint(resume, prefer="latest"))
        accept(bundle)
        return bundle
    store = CheckpointStore(run_dir / "checkpoints")
    bundle, notes = store.latest(accept)
    for note in notes:
        logger.warning("Skipping a damaged checkpoint: %s", note)
    if bundle is None:
        where = (f"no run directory {run_dir}" if not run_dir.is_dir()
                 else f"no valid checkpoint in {store.folder}")
        raise CheckpointError(
            f"--resume auto found {where}" + (f" ({len(notes)} damaged)" if notes else "")
            + ". Check --output-dir and --run-name (the run to resume), or start a new run "
            "without --resume."
            + (" Every worker reads the checkpoint itself: across machines, put the output "
               "directory on a shared filesystem or copy rank 0's run directory to the same "
               "path on each machine." if workers > 1 else ""))
    if notes:
        logger.warning("Falling back to %s.", bundle.path)
    return bundle


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _saved_fields(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The bundle's set-up; an option it does not record (a bundle of an earlier version, which
    did not have the option) had the option's default."""
    from trainer.config import CONFIG_FIELDS, default_of

    return {k: saved[k] if k in saved else
            (default_of(CONFIG_FIELDS[k]) if k in CONFIG_FIELDS else None) for k in now}


def _mode(n: int) -> str:
    return (f"{n} data-parallel workers (msrun --worker_num={n} ... --distributed)" if n > 1
            else "one process")


def check_resume(bundle: Bundle, fingerprint_fields: dict[str, Any], *, train_count: int,
                 steps_per_epoch: int, rates: int, workers: int) -> np.ndarray | None:
    """Refuses a bundle from a different set-up; returns the learning-rate array to train with.

    The array is the bundle's own (so a resumed schedule, plateau cuts included, continues at
    the right step), extended with its last rate to ``rates`` entries when the run now trains
    longer than planned.

    Raises:
        CheckpointError: naming the settings that differ, and how to start from the weights.
    """
    run = bundle.meta.run
    diffs = []
    if run is not None:
        saved = _saved_fields(run.fingerprint_fields, fingerprint_fields)
        diffs = [f"{k}: checkpoint {saved[k]!r}, now {v!r}"
                 for k, v in fingerprint_fields.items() if _normalise(saved[k]) != _normalise(v)]
        if run.train_count != train_count:
            diffs.append(f"training samples: checkpoint {run.train_count}, now {train_count}")
        if run.workers != workers:
            raise CheckpointError(
                f"Checkpoint {bundle.path} was saved by a run on {_mode(run.workers)}, and this "
                f"run is on {_mode(workers)}. The number of workers decides the shards, the steps "
                "per epoch and the data order, so the run cannot continue exactly. Resume it as "
                "it was launched, or start a new run from its weights with --init-from "
                f"{bundle.path} (weights load in either mode).")
    if bundle.meta.steps_per_epoch != steps_per_epoch:
        diffs.append(f"steps per epoch: checkpoint {bundle.meta.steps_per_epoch}, now "
                     f"{steps_per_epoch}")
    if diffs:
        raise CheckpointError(
            f"Checkpoint {bundle.path} belongs to a different set-up, so resuming would not "
            f"continue that run: {'; '.join(diffs)}. Resume with the original options, or use "
            "--init-from to start a new run from its weights.")
    saved_lr = bundle.params.get("learning_rate")
    if saved_lr is None:
        return None
    values = saved_lr.asnumpy().reshape(-1).astype(np.float32)
    if len(values) < rates:
        # Training longer than planned continues at the schedule's last rate.
        values = np.concatenate([values, np.full(rates - len(values), values[-1],
                                                 dtype=np.float32)])
    return values


def restore(bundle: Bundle, train_step, callbacks: Sequence[Any], stats,
            resume_data: Callable[[int], None]) -> list[str]:
    """Loads every piece of ``bundle`` into the run; returns what was restored, for the log.

    Args:
        bundle: The bundle, from :func:`find_resume` and checked by :func:`check_resume`.
        train_step: The train network (weights, optimizer moments, global step, statistics).
        callbacks: The run's callbacks (their states, by state key).
        stats: The run's ``callbacks.EpochStats``.
        resume_data: Makes the training data continue at a global step.
    """
    params = dict(bundle.params)
    # The optimizer was built with the checkpoint's rate array (extended when training longer,
    # see check_resume), so the saved copy is not loaded over it.
    params.pop("learning_rate", None)
    load_into(train_step, params, ignore_missing=("learning_rate",), source=bundle.path)
    restored = restore_states(callbacks, bundle.meta.callbacks, str(bundle.path))
    stats.load_state_dict(bundle.meta.epoch_stats)
    resume_data(bundle.global_step)
    return ["weights", "optimizer state", "schedule position", *restored]


def resume_point(resume: str | Path, run_dir: Path, fingerprint_fields: dict[str, Any], data,
                 callbacks: Sequence[Any], workers: int, rates: int):
    """The bundle ``--resume`` names, found (:func:`find_resume`) and checked against this run
    (:func:`check_resume`), and the learning rates it continues with."""
    bundle = find_resume(resume, run_dir, callbacks=callbacks, workers=workers)
    lr = check_resume(bundle, fingerprint_fields, train_count=data.train_count,
                      steps_per_epoch=data.steps_per_epoch, rates=rates, workers=workers)
    return bundle, lr


def start_point(bundle: Bundle | None, init_from, *, train_step, network, callbacks, stats,
                resume_data: Callable[[int], None], net: str) -> int:
    """Restores ``bundle`` (a resume) or loads ``init_from``'s weights into ``network``;
    returns the epoch training starts from."""
    if bundle is not None:
        restored = restore(bundle, train_step, callbacks, stats, resume_data)
        logger.info("Resumed from %s; restored %s.", bundle.describe(), ", ".join(restored))
        return bundle.epoch
    if init_from:
        from trainer.checkpoint import load_weights, read_checkpoint

        weights = read_checkpoint(init_from)
        load_weights(network, weights, net=net)
        logger.info("Initialised the weights from %s (optimizer state and step start "
                    "fresh).", weights.path)
    return 0


def complete_run(bundle: Bundle, callbacks: Sequence[Any], run_dir: Path, epochs: int) -> None:
    """``--resume`` of a run that has trained its epochs: its callbacks' states restored (the
    history the caller returns), a line saying so, and nothing trained."""
    restore_states(callbacks, bundle.meta.callbacks, str(bundle.path))
    logger.info("Run %s is complete: %s has %d of --epochs %d epoch(s) done; nothing to "
                "train. Pass a larger --epochs to train longer.", run_dir, bundle.describe(),
                bundle.epoch, epochs)
