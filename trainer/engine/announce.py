"""What a run says about itself before the first step: the network's summary and one line of
what will be trained, on what, and how."""

from __future__ import annotations

import logging
from pathlib import Path

from trainer.config import save_config
from trainer.errors import OutputError, os_fault

logger = logging.getLogger("mstrain")


def log_summary(built, net: str) -> None:
    """The network's layers, output shapes and parameter counts, one log line each."""
    from trainer.networks.summary import summarize

    text = summarize(built.cell, built.image_size, net, in_channels=built.in_channels).format()
    for line in text.split("\n"):
        logger.info("%s", line)


def network_summary(cfg) -> str:
    """The configured network's summary as text, for a network not yet trained (the data's
    shape taken from the configuration, or one channel and ten classes)."""
    from trainer.device import set_mode_and_device
    from trainer.networks import build_network
    from trainer.networks.summary import summarize

    set_mode_and_device(cfg.mode, cfg.device)
    built = build_network(cfg.net, cfg.num_classes or 10, in_channels=cfg.channels or 1,
                          image_size=cfg.image_size)
    return summarize(built.cell, built.image_size, cfg.net,
                     in_channels=built.in_channels).format()


def log_start(cfg, run_dir: Path, data, kind: str, workers: int, steps: int,
              native: bool) -> None:
    """The run directory, the data and recipe of the run, and the options that change the
    step."""
    batch = f"batch {cfg.batch_size}"
    if cfg.distributed:
        batch += (f" per worker x {workers} workers = {cfg.batch_size * workers}"
                  if workers > 1 else " on 1 worker")
    if cfg.accumulate_steps > 1:
        batch += f", {cfg.accumulate_steps} per update"
    noun = "digits" if kind == "digits" else "images"
    where = (f"validating on {data.valid_count} {noun} held out of the training files "
             f"(the test split's {data.test_count} are scored once, at the end)"
             if data.test is not None else
             f"validating on the test split's {data.valid_count} {noun} (--val-split 0)")
    logger.info("Run directory: %s", run_dir)
    logger.info("Training %s on %d samples (%d steps/epoch, %s), %s; %d epoch(s), %s, lr %s "
                "(%s), mode %s, %s%s.", cfg.net, data.train_count, data.steps_per_epoch,
                batch, where, cfg.epochs, cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.mode,
                "native kernels, " if native else "",
                f"up to {steps} steps per launch" if steps > 1 else "one step per launch")
    options = [f"{flag} {value}" for flag, value in (
        ("--clip-grad-norm", cfg.clip_grad_norm), ("--clip-grad-value", cfg.clip_grad_value),
        ("--label-smoothing", cfg.label_smoothing),
        ("--init", "" if cfg.init == "default" else cfg.init)) if value]
    if cfg.ema_decay:
        options.append(f"--ema-decay {cfg.ema_decay} (validation, the best checkpoint and "
                       "export use the moving average of the weights)")
    if cfg.augment:
        options.append("--augment")
    if options:
        logger.info("With %s.", ", ".join(options))


def write_config(resolved, run_dir: Path) -> None:
    """``config.yaml``: the resolved configuration, before the first step."""
    try:
        save_config(resolved, run_dir / "config.yaml")
    except OSError as exc:
        raise OutputError(f"Cannot write {run_dir / 'config.yaml'}: {os_fault(exc)}. "
                          "Free disk space or choose an --output-dir you may write to; "
                          "nothing was trained.") from None
