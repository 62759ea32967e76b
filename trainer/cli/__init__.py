"""The command line: ``train.py``, ``predict.py`` and ``mstrain`` with its subcommands."""

from trainer.cli.parser import (
    UserParser,
    build_parser,
    main,
    parse_args,
    parse_callback_spec,
    run_reporting_errors,
)

__all__ = ["UserParser", "build_parser", "main", "parse_args", "parse_callback_spec",
           "run_reporting_errors"]
