"""``mstrain summary``: a network's layers, output shapes and parameter counts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from trainer.cli.parser import UserParser, add_config_options, run_reporting_errors


def build_parser(prog: str = "mstrain summary") -> UserParser:
    parser = UserParser(prog=prog, usage="%(prog)s [--net NAME] [--num-classes N]",
                        description="Show a network's layers in the order they run, with their "
                        "output shapes and parameter counts.",
                        argument_default=argparse.SUPPRESS)
    add_config_options(parser, ("network",))
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "mstrain summary") -> int:
    """Prints the summary of ``--net``; returns the exit status."""

    def command() -> None:
        from trainer.config import TrainConfig

        args = build_parser(prog).parse_args(argv)
        cfg = TrainConfig(net=getattr(args, "net", "lenet"),
                          num_classes=getattr(args, "num_classes", 10)).validate()
        from trainer.device import set_mode_and_device
        from trainer.networks import build_network
        from trainer.networks.summary import summarize

        set_mode_and_device("graph", "CPU")
        built = build_network(cfg.net, cfg.num_classes or 10, in_channels=cfg.channels or 1,
                              image_size=cfg.image_size)
        print(summarize(built.cell, built.image_size, cfg.net,
                        in_channels=built.in_channels).format())

    return run_reporting_errors(command)
