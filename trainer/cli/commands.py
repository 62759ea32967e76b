"""``mstrain``: one command with a subcommand per job.

    mstrain train   [options]              train (what python train.py does)
    mstrain eval    --ckpt PATH [options]  evaluate a checkpoint on the test split
    mstrain export  --ckpt PATH --format mindir|onnx
    mstrain predict --ckpt PATH INPUT ...  the digits in your own images
    mstrain summary [--net NAME]           a network's layers, output shapes and parameters
    mstrain tune    --config FILE [options] a hyperparameter search with Optuna
    mstrain cache   list | clear [options] what the tool keeps in its cache folder
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trainer.errors import ConfigError

COMMANDS = {
    "train": "train a network (the options of python train.py)",
    "eval": "evaluate a checkpoint on the test split: accuracy, confusion matrix, plots",
    "export": "write a checkpoint's network as MINDIR or ONNX, checked against it",
    "predict": "predict the classes of your own images (the options of python predict.py)",
    "summary": "show a network's layers, output shapes and parameter counts",
    "tune": "search hyperparameters with Optuna (pip install -e \".[tune]\")",
    "cache": "list or clear the cache folder (decoded images, raw copies of IDX files)",
}


def overview() -> str:
    lines = ["usage: mstrain COMMAND [options]", "",
             "A MindSpore training toolkit: networks on MNIST, CIFAR-10 or your own images "
             "through Model.fit.", "",
             "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'mstrain COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``mstrain``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    prog = f"mstrain {command}"
    if command in ("train", "eval", "export"):
        from trainer.cli.parser import main as run_command

        return run_command(rest, command=command, prog=prog)
    if command == "predict":
        from trainer.cli.predict import main as predict

        return predict(rest, prog=prog)
    if command == "summary":
        from trainer.cli.summary import main as summary

        return summary(rest, prog=prog)
    if command == "tune":
        from trainer.tune.cli import main as tune

        return tune(rest, prog=prog)
    if command == "cache":
        from trainer.cli.cache import main as cache

        return cache(rest, prog=prog)
    from trainer.cli.parser import run_reporting_errors

    def unknown() -> None:
        raise ConfigError(f"Unknown command {command!r}. Choose one of: "
                          f"{', '.join(COMMANDS)} (mstrain --help lists them).")

    return run_reporting_errors(unknown)


def console_main() -> None:
    """The installed commands' entry point: ``mstrain``, and ``mstrain-predict`` (the command
    ``predict.py`` is), told apart by the name they were started under; the process then ends
    through :func:`~trainer.cli.exit.exit_process` with the command's status."""
    from pathlib import Path

    from trainer.cli.exit import exit_process

    if Path(sys.argv[0]).name == "mstrain-predict":
        from trainer.cli.predict import main as predict

        exit_process(predict())
    exit_process(main())


if __name__ == "__main__":
    console_main()
