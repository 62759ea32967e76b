"""Parsing the command line of ``train.py`` and ``mstrain train|eval|export``.

``train.py --eval-only ...`` and ``train.py --export FMT ...`` are forwards: they run
``mstrain eval ...`` and ``mstrain export --format FMT ...``, with those commands' options,
rules and messages.

Flags are generated from :class:`~trainer.config.TrainConfig`'s fields, so every option has one
spelling everywhere: ``batch_size`` in YAML is ``--batch-size`` here; ``--help`` groups them as
the fields declare. Precedence: defaults, then ``--config FILE``, then flags. Nothing here imports
MindSpore, so ``--help`` and configuration mistakes answer at once.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from trainer.config import CONFIG_FIELDS, TrainConfig, default_of, load_yaml
from trainer.errors import ConfigError, UserError
from trainer.registry import NETWORKS
from trainer.serving import FORMATS

COMMANDS = ("train", "eval", "export")
# The option groups of --help, in order, with their titles.
GROUPS = {"network": "network", "data": "data", "optimisation": "optimisation",
          "schedule": "learning-rate schedule", "run": "where and how it runs",
          "monitoring": "monitoring, early stopping and plateau", "checkpoints": "checkpoints",
          "tracking": "experiment tracking"}
# The options evaluation and export use: what to build, what to read, where to run.
_SERVING_GROUPS = ("network", "data")
_SERVING_FIELDS = ("device", "mode", "output_dir", "report_to", "mlflow_uri",
                   "mlflow_experiment")

EPILOG = """examples:
  python train.py --net lenet --epochs 10
  python train.py --config configs/mlp_mnist.yaml --lr 0.05
  python train.py --data-source synthetic --epochs 2          # no download needed
  python train.py --data-source cifar10 --net resnet20 --augment
  python train.py --data-source imagefolder --data-dir photos  # photos/train/<class>/*.jpg
  python train.py --run-name demo --resume auto               # continue run 'demo'
  mstrain eval --ckpt runs/demo                   # evaluate a saved run (best.ckpt)
  mstrain export --format mindir --ckpt runs/demo # runs/demo/export/lenet.mindir
  python train.py --callback "my_pkg.cbs:PrintLR(every=100)"  # add your own callback
"""


class UserParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one-paragraph ``ConfigError``s (exit 2)."""

    def error(self, message: str):  # one paragraph and exit 2, like every other mistake
        self.print_usage(sys.stderr)
        how = f"python {self.prog}" if self.prog.split()[0].endswith(".py") else self.prog
        raise ConfigError(f"{message}. Run '{how} --help' for the options.")


def _help(meta: dict[str, Any], default: Any) -> str:
    text = meta["help"]
    listed = meta.get("listed")
    if listed is not None:  # the registry's names, as the option takes them
        text += f" [choices: {', '.join(listed.names())}]"
    if default in ("", [], None) or "default" in meta["help"]:
        return text
    shown = default if not isinstance(default, bool) else ("on" if default else "off")
    return f"{text} (default: {shown})"


def add_config_options(parser: argparse.ArgumentParser, groups: Sequence[str] = tuple(GROUPS),
                       fields: Sequence[str] = ()) -> None:
    """One flag per configuration field of ``groups`` (and the named ``fields``), grouped."""
    sections = {name: parser.add_argument_group(GROUPS[name]) for name in GROUPS
                if name in groups or any(CONFIG_FIELDS[f].metadata["group"] == name
                                         for f in fields)}
    for name, f in CONFIG_FIELDS.items():
        meta = f.metadata
        if not meta.get("cli", True) or (meta["group"] not in groups and name not in fields):
            continue
        section, default = sections[meta["group"]], default_of(f)
        flag, help_text = "--" + name.replace("_", "-"), _help(meta, default)
        if isinstance(default, bool):
            section.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, list):
            section.add_argument(flag, type=int, nargs="+", metavar="N", help=help_text)
        else:
            metavar = meta.get("metavar") or {int: "N", float: "X"}.get(type(default))
            choices = meta.get("choices")
            registry = meta.get("registry")
            if registry is not None and not meta.get("plugin"):
                choices, metavar = registry.names(), metavar or "NAME"
            section.add_argument(flag, type=type(default), choices=choices,
                                 metavar=metavar, help=help_text)


def build_parser(command: str = "train", prog: str = "train.py") -> argparse.ArgumentParser:
    """The parser of ``command`` (``train``, ``eval`` or ``export``).

    ``train`` is ``train.py``'s: every option, plus ``--eval-only`` and ``--export``, which
    forward to the other two commands (:func:`parse_args`).
    """
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {COMMANDS}, got {command!r}")
    descriptions = {
        "train": "Train a network (LeNet-5, an MLP, ResNet-20 or your own) on MNIST, "
                 "Fashion-MNIST, KMNIST, CIFAR-10 or your own images with MindSpore's Model, "
                 "with checkpoints, history and exact resume.",
        "eval": "Evaluate a checkpoint on the test split: accuracy, per-class table, confusion "
                "matrix (writes confusion.png, mistakes.png, evaluation.json).",
        "export": "Write a checkpoint's network for serving (MINDIR or ONNX), checked against "
                  "the checkpoint."}
    usage = "%(prog)s [options]" + (" --ckpt PATH" if command != "train" else "")
    parser = UserParser(prog=prog, usage=usage,
                        description=textwrap.fill(descriptions[command], 79),
                        epilog=EPILOG if command == "train" else None,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        argument_default=argparse.SUPPRESS)
    actions = parser.add_argument_group("recipe and actions")
    actions.add_argument("--config", metavar="FILE", help="YAML recipe, e.g. "
                         "configs/lenet_mnist.yaml; flags override its values")
    if command == "train":
        _train_actions(actions)
        add_config_options(parser)
        _serving_actions(parser.add_argument_group("after training (aliases of mstrain eval "
                                                   "and mstrain export)"), aliases=True)
    else:
        add_config_options(parser, _SERVING_GROUPS, _SERVING_FIELDS)
        _serving_actions(actions, export=command == "export")
        for action in parser._actions:
            if "--net" in action.option_strings:
                action.help = ("the network to build, or 'pkg.module:function' (default: the one "
                               f"the checkpoint records) [choices: {', '.join(NETWORKS.names())}]")
    return parser


def _train_actions(group) -> None:
    group.add_argument("--callback", action="append", metavar="SPEC", dest="callback_specs",
                       help="add a callback: 'pkg.mod:Class' or 'pkg.mod:Class(key=value, ...)' "
                       "with literal values; repeatable")
    group.add_argument("--resume", metavar="auto|PATH", help="continue a run: 'auto' takes the "
                       "newest valid checkpoint of --output-dir/--run-name; or a bundle's path")
    group.add_argument("--init-from", metavar="PATH", help="start a new run from a checkpoint's "
                       "weights only (fine-tuning)")
    group.add_argument("--overwrite", action="store_true", help="when the run directory holds "
                       "a run already, move it aside (NAME.replaced-DATE-TIME, never deleted) "
                       "and start afresh")


def _serving_actions(group, *, aliases: bool = False, export: bool = False) -> None:
    if aliases:
        group.add_argument("--eval-only", action=_Unabbreviated, nargs=0, help="evaluate "
                           "--ckpt instead of training: the rest of the line is mstrain eval's")
        group.add_argument("--export", action=_Unabbreviated, choices=FORMATS, help="export "
                           "--ckpt's network instead of training: the rest of the line is mstrain "
                           "export's (--export FMT is its --format FMT)")
    elif export:
        group.add_argument("--format", choices=FORMATS, dest="export", required=True,
                           help="MINDIR (dynamic batch) or ONNX (fixed batch)")
    group.add_argument("--ckpt", metavar="PATH", required=not aliases, help="the checkpoint: a "
                       ".ckpt, a latest.json, or a run directory (its best.ckpt)")
    if aliases or export:
        group.add_argument("--export-batch", type=int, metavar="N", help="fixed batch size of "
                           "the exported input (default: dynamic for mindir, 1 for onnx)")
    group.add_argument("--results-dir", metavar="DIR", help="where the report or export goes "
                       "(default: the checkpoint's run directory, RUN/export for exports)")


class _Unabbreviated(argparse.Action):
    """``--eval-only`` or ``--export`` reaching the training parser, which only an abbreviation
    can do: :func:`_forwarded` recognises the full spellings."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise ConfigError(f"{option_string} stands for {self.option_strings[0]}, which forwards "
                          f"the command line to another command; write {self.option_strings[0]} "
                          "in full.")


def _forwarded(argv: list[str], prog: str) -> tuple[str, list[str], str]:
    """The command, arguments and name a ``train.py`` command line runs as: ``--eval-only``
    makes it ``mstrain eval``, ``--export FMT`` ``mstrain export --format FMT``."""
    probe = UserParser(prog=prog, add_help=False, allow_abbrev=False)
    probe.add_argument("--eval-only", action="store_true")
    probe.add_argument("--export", choices=FORMATS)
    known, rest = probe.parse_known_args(argv)
    if known.eval_only and known.export:
        raise ConfigError("--eval-only and --export are separate actions; run train.py once for "
                          "each, with the same --ckpt.")
    if known.eval_only:
        return "eval", rest, f"{prog} --eval-only"
    if known.export:
        return "export", ["--format", known.export, *rest], f"{prog} --export"
    return "train", argv, prog


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
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ConfigError(f"--callback {spec[:200]!r} cannot be parsed ({exc}). Write it as "
                          "'pkg.mod:Class' or 'pkg.mod:Class(key=value, other=2)' with literal "
                          "values (numbers, strings in quotes, True/False, lists).") from None
    return {"class": target.strip(), "args": args}


def parse_args(argv: Sequence[str] | None = None, command: str = "train",
               prog: str = "train.py") -> argparse.Namespace:
    """Parses a command line into ``namespace.config`` (validated) and the run actions.

    Raises:
        ConfigError: an unknown flag, a bad value, a bad YAML recipe, or actions that do not
            go together.

    Example:
        >>> ns = parse_args(["--net", "mlp", "--epochs", "2"])
        >>> (ns.config.net, ns.config.epochs, ns.resume)
        ('mlp', 2, None)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if command == "train":
        command, argv, prog = _forwarded(argv, prog)
    ns = build_parser(command, prog).parse_args(argv)
    values: dict[str, Any] = load_yaml(ns.config) if getattr(ns, "config", None) else {}
    for name in CONFIG_FIELDS:
        if hasattr(ns, name):
            values[name] = getattr(ns, name)
    # A network named by the user (flag or recipe); evaluation and export otherwise build the
    # one their checkpoint records.
    named_net = values.get("net")
    # Neither named: evaluation and export use the data the checkpoint's run recorded.
    recorded = "data_source" not in values and "data_dir" not in values
    specs = [parse_callback_spec(s) for s in getattr(ns, "callback_specs", None) or []]
    if specs:
        values["callbacks"] = list(values.get("callbacks") or []) + specs
    result = argparse.Namespace(
        config=TrainConfig(**values).validate(),
        resume=getattr(ns, "resume", None), init_from=getattr(ns, "init_from", None),
        eval_only=command == "eval" or getattr(ns, "eval_only", False),
        ckpt=getattr(ns, "ckpt", None), export=getattr(ns, "export", None),
        export_batch=getattr(ns, "export_batch", None),
        results_dir=getattr(ns, "results_dir", None), overwrite=getattr(ns, "overwrite", False),
        net=named_net, recorded=recorded)
    _check_actions(result)
    return result


def _check_actions(result: argparse.Namespace) -> None:
    # Evaluation and export have parsers of their own, which require --ckpt and take no
    # training actions; what is left is training given their flags, and a recipe's values.
    action = "--eval-only" if result.eval_only else "--export" if result.export else None
    if result.ckpt and not action:
        raise ConfigError("--ckpt is only used with --eval-only or --export. To continue a run "
                          "use --resume PATH; to start a new run from saved weights use "
                          "--init-from PATH.")
    if result.export_batch is not None and (not result.export or result.export_batch < 1
                                            or result.export_batch > 65_536):
        raise ConfigError(f"--export-batch is {result.export_batch}; it is used only with "
                          "--export and must be at least 1 and at most 65536 (leave it out for a "
                          "dynamic batch in MINDIR, batch 1 in ONNX).")
    if result.results_dir and not action:
        raise ConfigError("--results-dir is only used with --eval-only or --export; a training "
                          "run writes into --output-dir/--run-name.")
    if result.overwrite and result.resume:
        raise ConfigError("--overwrite starts a training run afresh; it does not go with "
                          "--resume. Leave it out.")
    if result.resume and result.init_from:
        raise ConfigError("--resume and --init-from exclude each other: --resume continues the "
                          "same run exactly, --init-from starts a new one from saved weights.")
    if action and result.config.distributed:
        raise ConfigError(f"{action} runs in one process and does not take --distributed, which "
                          "is for training under msrun. Run python train.py "
                          f"{action} --ckpt PATH without msrun; a checkpoint from a "
                          "data-parallel run loads there like any other.")


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
        print("stopped: interrupted; nothing more was written.", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> None:
    """Carries out a parsed command line: train, evaluate or export."""
    from trainer.engine.trainer import Trainer

    if args.eval_only:
        Trainer(args.config).evaluate(args.ckpt, results_dir=args.results_dir, net=args.net,
                                      recorded=args.recorded)
    elif args.export:
        from trainer.logs import setup_logging
        from trainer.serving.export import export_checkpoint

        setup_logging()
        export_checkpoint(args.ckpt, args.export, config=args.config, net=args.net,
                          batch=args.export_batch, out_dir=args.results_dir,
                          recorded=args.recorded)
    else:
        Trainer(args.config).fit(resume=args.resume, init_from=args.init_from,
                                 overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None, command: str = "train",
         prog: str = "train.py") -> int:
    """Runs ``train.py`` (or ``mstrain COMMAND``); returns the exit status (0, or 2 for a
    user's mistake)."""
    return run_reporting_errors(lambda: run(parse_args(argv, command, prog)))
