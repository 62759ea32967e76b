"""The command line: parse, build the configuration, train or evaluate.

Flags are generated from :class:`~trainer.config.TrainConfig`'s fields, so every option has one
spelling everywhere: ``batch_size`` in YAML is ``--batch-size`` here. Precedence: defaults, then
``--config FILE``, then flags. Nothing here imports MindSpore until the configuration is valid, so
``--help`` and configuration mistakes answer at once.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from trainer.config import CONFIG_FIELDS, TrainConfig, default_of, load_yaml
from trainer.errors import ConfigError, UserError

EPILOG = """examples:
  python train.py --net lenet --epochs 10
  python train.py --config configs/mlp_mnist.yaml --lr 0.05
  python train.py --data-source synthetic --epochs 2          # no download needed
  python train.py --run-name demo --resume auto               # continue run 'demo'
  python train.py --eval-only --ckpt runs/demo                # evaluate a saved run
  python train.py --export mindir --ckpt runs/demo            # runs/demo/export/lenet.mindir
  python train.py --callback "my_pkg.cbs:PrintLR(every=100)"  # add your own callback
"""


class UserParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one-paragraph ``ConfigError``s (exit 2)."""

    def error(self, message: str):  # one paragraph and exit 2, like every other mistake
        self.print_usage(sys.stderr)
        raise ConfigError(f"{message}. Run 'python {self.prog} --help' for the options.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one flag per configuration option plus the run actions."""
    parser = UserParser(prog="train.py", usage="%(prog)s [options]",
                     description="Train LeNet-5 or an MLP on MNIST with "
                     "MindSpore's Model, with checkpoints, history and exact resume.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="YAML recipe, e.g. "
                        "configs/lenet_mnist.yaml; flags override its values")
    for name, f in CONFIG_FIELDS.items():
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        default = default_of(f)
        flag = "--" + name.replace("_", "-")
        help_text = f"{meta['help']} (default: {default!r})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, type=int, nargs="+", metavar="N", help=help_text)
        else:
            metavar = meta.get("metavar") or {int: "N", float: "X"}.get(type(default))
            parser.add_argument(flag, type=type(default), choices=meta.get("choices"),
                                metavar=metavar, help=help_text)
    parser.add_argument("--callback", action="append", metavar="SPEC", dest="callback_specs",
                        help="add a callback: 'pkg.mod:Class' or 'pkg.mod:Class(key=value, ...)' "
                        "with literal values; repeatable")
    parser.add_argument("--resume", metavar="auto|PATH", help="continue a run: 'auto' takes the "
                        "newest valid checkpoint of --output-dir/--run-name; or a bundle's path")
    parser.add_argument("--init-from", metavar="PATH", help="start a new run from a "
                        "checkpoint's weights only (fine-tuning)")
    parser.add_argument("--overwrite", action="store_true", help="when the run directory holds "
                        "a run already, move it aside (NAME.replaced-DATE-TIME, never deleted) "
                        "and start afresh")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --ckpt on the test "
                        "split (accuracy, per-class table, confusion matrix; writes "
                        "confusion.png, mistakes.png, evaluation.json) and exit")
    parser.add_argument("--export", choices=("mindir", "onnx"), help="write --ckpt's network "
                        "for serving (RUN/export/NET.mindir or .onnx), checked against the "
                        "checkpoint, and exit")
    parser.add_argument("--export-batch", type=int, metavar="N", help="fixed batch size of the "
                        "exported input (default: dynamic for mindir, 1 for onnx)")
    parser.add_argument("--ckpt", metavar="PATH", help="checkpoint for --eval-only or --export: "
                        "a .ckpt, a latest.json or a run directory")
    parser.add_argument("--results-dir", metavar="DIR", help="where --eval-only and --export "
                        "write (default: the checkpoint's run directory, RUN/export for exports)")
    return parser


def parse_callback_spec(spec: str) -> dict[str, Any]:
    """Parses ``pkg.mod:Class`` or ``pkg.mod:Class(key=value, ...)`` without evaluating code.

    Raises:
        ConfigError: the spec is not a class path with literal keyword arguments.
    """
    text = spec.strip()
    if "(" not in text:
        return {"class": text, "args": {}}
    target, _, rest = text.partition("(")
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError("expected a single argument list after the class")
        if call.args:
            raise ValueError("only keyword arguments are allowed")
        args = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
        if len(args) != len(call.keywords):
            raise ValueError("'**' is not allowed")
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"--callback {spec!r} cannot be parsed ({exc}). Write it as "
                          "'pkg.mod:Class' or 'pkg.mod:Class(key=value, other=2)' with literal "
                          "values (numbers, strings in quotes, True/False, lists).") from None
    return {"class": target.strip(), "args": args}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line into ``namespace.config`` (validated) and the run actions.

    Raises:
        ConfigError: an unknown flag, a bad value, or a bad YAML recipe.

    Example:
        >>> ns = parse_args(["--net", "mlp", "--epochs", "2"])
        >>> (ns.config.net, ns.config.epochs, ns.resume)
        ('mlp', 2, None)
    """
    ns = build_parser().parse_args(argv)
    values: dict[str, Any] = load_yaml(ns.config) if getattr(ns, "config", None) else {}
    for name in CONFIG_FIELDS:
        if hasattr(ns, name):
            values[name] = getattr(ns, name)
    # A network named by the user (flag or recipe); evaluation and export otherwise build the
    # one their checkpoint records.
    named_net = values.get("net")
    specs = [parse_callback_spec(s) for s in getattr(ns, "callback_specs", None) or []]
    if specs:
        values["callbacks"] = list(values.get("callbacks") or []) + specs
    result = argparse.Namespace(
        config=TrainConfig(**values).validate(),
        resume=getattr(ns, "resume", None), init_from=getattr(ns, "init_from", None),
        eval_only=getattr(ns, "eval_only", False), ckpt=getattr(ns, "ckpt", None),
        export=getattr(ns, "export", None), export_batch=getattr(ns, "export_batch", None),
        results_dir=getattr(ns, "results_dir", None), overwrite=getattr(ns, "overwrite", False),
        net=named_net)
    if result.eval_only and result.export:
        raise ConfigError("--eval-only and --export are separate actions; run train.py once for "
                          "each, with the same --ckpt.")
    action = "--eval-only" if result.eval_only else "--export" if result.export else None
    if action and not result.ckpt:
        raise ConfigError(f"{action} needs --ckpt PATH: a checkpoint file, a latest.json, or a "
                          "run directory such as runs/lenet-20260101-120000.")
    if result.ckpt and not action:
        raise ConfigError("--ckpt is only used with --eval-only or --export. To continue a run "
                          "use --resume PATH; to start a new run from saved weights use "
                          "--init-from PATH.")
    if action and (result.resume or result.init_from):
        raise ConfigError(f"{action} does not train, so --resume and --init-from do not apply; "
                          "name the checkpoint with --ckpt only.")
    if result.export_batch is not None and (not result.export or result.export_batch < 1):
        raise ConfigError(f"--export-batch is {result.export_batch}; it is used only with "
                          "--export and must be at least 1 (leave it out for a dynamic batch in "
                          "MINDIR, batch 1 in ONNX).")
    if result.results_dir and not action:
        raise ConfigError("--results-dir is only used with --eval-only or --export; a training "
                          "run writes into --output-dir/--run-name.")
    if result.overwrite and (action or result.resume):
        raise ConfigError("--overwrite starts a training run afresh; it does not go with "
                          f"{action or '--resume'}. Leave it out.")
    if result.resume and result.init_from:
        raise ConfigError("--resume and --init-from exclude each other: --resume continues the "
                          "same run exactly, --init-from starts a new one from saved weights.")
    if action and result.config.distributed:
        raise ConfigError(f"{action} runs in one process and does not take --distributed, which "
                          "is for training under msrun. Run python train.py "
                          f"{action} --ckpt PATH without msrun; a checkpoint from a "
                          "data-parallel run loads there like any other.")
    return result


def run_reporting_errors(command: Callable[[], int | None]) -> int:
    """Runs a command; a user's mistake or Ctrl-C becomes a one-paragraph ``error:`` and its exit
    status instead of a traceback. Returns the exit status (0 when the command returns None).

    SIGINT and SIGTERM are blocked first, before MindSpore starts a thread, and taken by the
    watcher of :mod:`trainer.engine.stop`, so a Ctrl-C is reported as a Ctrl-C.
    """
    from trainer.engine.stop import block_signals

    block_signals()
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ warnings are noise for users
    try:
        return command() or 0
    except UserError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing more was written.", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0, or 2 for a user's mistake)."""

    def command() -> None:
        args = parse_args(argv)
        from trainer.engine.trainer import Trainer

        if args.eval_only:
            Trainer(args.config).evaluate(args.ckpt, results_dir=args.results_dir, net=args.net)
        elif args.export:
            from trainer.logs import setup_logging
            from trainer.serving.export import export_checkpoint

            setup_logging()
            export_checkpoint(args.ckpt, args.export, config=args.config, net=args.net,
                              batch=args.export_batch, out_dir=args.results_dir)
        else:
            Trainer(args.config).fit(resume=args.resume, init_from=args.init_from,
                                     overwrite=args.overwrite)

    return run_reporting_errors(command)


if __name__ == "__main__":
    sys.exit(main())
