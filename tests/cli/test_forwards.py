"""``train.py --eval-only`` and ``train.py --export FMT`` forward to ``mstrain eval`` and
``mstrain export --format FMT``: the same parser, rules and messages."""

from __future__ import annotations

import pytest

from tests.conftest import config_error
from trainer.cli import main, parse_args


def _same(a, b) -> None:
    assert {**vars(a), "config": a.config.to_dict()} == {**vars(b), "config": b.config.to_dict()}


def test_eval_only_is_mstrain_eval():
    rest = ["--ckpt", "runs/x", "--data-dir", "digits", "--net", "mlp", "--output-dir", "out"]
    _same(parse_args(["--eval-only", *rest]), parse_args(rest, command="eval"))
    _same(parse_args([*rest[:2], "--eval-only", *rest[2:]]), parse_args(rest, command="eval"))


def test_export_is_mstrain_export_with_its_format():
    rest = ["--ckpt", "runs/x", "--export-batch", "8"]
    _same(parse_args(["--export", "onnx", *rest]),
          parse_args(["--format", "onnx", *rest], command="export"))
    _same(parse_args([*rest, "--export=mindir"]),
          parse_args(["--format", "mindir", *rest], command="export"))


@pytest.mark.parametrize(("argv", "expected"), [
    (["--eval-only", "--ckpt", "runs/x", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    (["--export", "onnx", "--ckpt", "runs/x", "--lr", "0.1"], "unrecognized arguments: --lr"),
    (["--eval-only", "--data-dir", "d"], "required: --ckpt"),
])
def test_the_subcommands_rules_apply(argv, expected):
    message = config_error(parse_args, argv)
    assert expected in message
    assert f"python train.py {argv[0]} --help" in message


def test_an_abbreviation_is_refused_with_the_full_spelling():
    assert "write --eval-only in full" in config_error(parse_args, ["--eval-o", "--ckpt", "x"])


def test_help_of_a_forward_is_the_subcommands(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--eval-only", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: train.py --eval-only [options] --ckpt PATH")
    assert "--epochs" not in out and "--results-dir" in out
