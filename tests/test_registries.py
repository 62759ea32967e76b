"""The registries own the names: what the modules declare is what their decorators register, the
command line's choices are the registries', and the docs name every entry."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from trainer import registry
from trainer.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = {"data_source": registry.SOURCES, "net": registry.NETWORKS,
              "optimizer": registry.OPTIMIZERS, "lr_schedule": registry.SCHEDULES,
              "report_to": registry.TRACKERS}
# Where the docs describe each kind of entry.
DOCS = {"data_source": "docs/data-sources.md", "net": "docs/networks.md",
        "optimizer": "docs/training.md", "lr_schedule": "docs/training.md",
        "report_to": "docs/tracking.md"}


@pytest.mark.parametrize("option", REGISTRIES)
def test_what_is_declared_is_what_the_decorators_register(option):
    pytest.importorskip("mindspore")
    found = REGISTRIES[option]
    for entry in found.entries().values():
        importlib.import_module(entry.module)
    assert set(found.registered()) == set(found.names())
    for name in found.names():
        assert found.get(name) is found.registered()[name]


def _listed(help_text: str, flag: str) -> list[str]:
    """The names ``--help`` lists for ``flag``: its ``[choices: ...]``."""
    text = " ".join(help_text.split())
    block = re.search(rf"{re.escape(flag)} \S+ (.*?)(?= --[a-z]|$)", text)
    assert block, f"{flag} is not in the help"
    names = re.search(r"\[choices: ([^\]]+)\]", block.group(1))
    assert names, f"{flag}'s help lists no choices: {block.group(1)}"
    return [n.strip() for n in names.group(1).split(",")]


@pytest.mark.parametrize("option", REGISTRIES)
def test_the_choices_are_what_help_lists(option):
    flag = "--" + option.replace("_", "-")
    assert _listed(build_parser("train").format_help(), flag) == list(
        REGISTRIES[option].names())


def test_evaluation_lists_the_networks_too():
    assert _listed(build_parser("eval", "mstrain eval").format_help(), "--net") == list(
        registry.NETWORKS.names())


def test_the_command_line_refuses_what_no_registry_holds(capsys):
    from trainer.cli.parser import parse_args
    from trainer.errors import ConfigError

    for flag, value in (("--optimizer", "lamb"), ("--lr-schedule", "linear")):
        with pytest.raises(ConfigError) as info:
            parse_args([flag, value])
        assert value in str(info.value)
    capsys.readouterr()
    with pytest.raises(ConfigError, match="not a known data source. Choose one of: mnist"):
        parse_args(["--data-source", "cifar"])
    with pytest.raises(ConfigError, match="report_to"):
        parse_args(["--report-to", "wandb"])


@pytest.mark.parametrize("option", REGISTRIES)
def test_the_docs_name_every_entry(option):
    text = (ROOT / DOCS[option]).read_text(encoding="utf-8")
    missing = [n for n in REGISTRIES[option].names() if f"`{n}`" not in text]
    assert missing == [], f"{DOCS[option]} does not describe {missing}"


def test_a_declaration_must_be_literal(tmp_path, monkeypatch):
    (tmp_path / "bad.py").write_text('NAME = "x"\n@register_network(NAME)\ndef f():\n    pass\n')
    reg = registry.Registry("network", "register_network", "networks")
    monkeypatch.setattr(reg, "_files", lambda: [tmp_path / "bad.py"])
    monkeypatch.setattr(registry, "_module_of", lambda path: "bad")
    with pytest.raises(ValueError, match="takes the name as one string literal"):
        reg.names()
