"""The installed commands, ``mstrain`` and ``mstrain-predict``, share one entry point."""

from __future__ import annotations

import sys

import pytest

from trainer.cli import commands
from trainer.cli import exit as process_exit
from trainer.cli import predict as predict_cli


class Ended(Exception):
    pass


@pytest.mark.parametrize(("script", "expected"), [("/venv/bin/mstrain", "mstrain"),
                                                 ("/venv/bin/mstrain-predict", "predict")])
def test_one_entry_point_runs_the_command_it_was_installed_as(monkeypatch, script, expected):
    def end(status):
        raise Ended(status)

    monkeypatch.setattr(sys, "argv", [script, "--anything"])
    monkeypatch.setattr(process_exit, "exit_process", end)
    monkeypatch.setattr(commands, "main", lambda argv=None: 3)
    monkeypatch.setattr(predict_cli, "main", lambda argv=None: 5)
    with pytest.raises(Ended) as ended:
        commands.console_main()
    assert ended.value.args == ((3 if expected == "mstrain" else 5),)
