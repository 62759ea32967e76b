"""``mstrain`` and its subcommands: grouped help under the right name, one parser per job."""

from __future__ import annotations

import re

import pytest

from trainer.cli import build_parser, parse_args
from trainer.cli.commands import COMMANDS, main
from trainer.config import CONFIG_FIELDS


def test_overview_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mstrain COMMAND")
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s", out, re.M), name


@pytest.mark.parametrize("command", ["train", "eval", "export"])
def test_help_names_the_command_and_groups_the_options(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mstrain {command} ")
    assert "\nnetwork:\n" in out and "\ndata:\n" in out and "\nrecipe and actions:\n" in out
    assert "(default: '')" not in out
    assert not re.search(r"\(default: [^)]*\) \(default:", out), "a default shown twice"


def test_train_help_has_every_group_and_train_py_keeps_its_name(capsys):
    text = build_parser().format_help()
    assert text.startswith("usage: train.py ")
    for title in ("optimisation:", "learning-rate schedule:", "checkpoints:",
                  "after training (aliases of mstrain eval and mstrain export):"):
        assert f"\n{title}\n" in text
    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    assert {"--eval-only", "--export", "--ckpt"} <= flags  # the aliases stay


def test_eval_and_export_take_only_what_serving_needs():
    for command in ("eval", "export"):
        flags = {opt for a in build_parser(command)._actions for opt in a.option_strings}
        assert {"--ckpt", "--net", "--data-dir", "--device", "--results-dir"} <= flags
        assert not flags & {"--epochs", "--resume", "--callback", "--lr"}


def test_eval_is_the_eval_only_alias():
    ns = parse_args(["--ckpt", "runs/x"], command="eval", prog="mstrain eval")
    assert ns.eval_only and ns.ckpt == "runs/x" and ns.net is None
    ns = parse_args(["--ckpt", "runs/x", "--format", "onnx", "--net", "mlp"], command="export",
                    prog="mstrain export")
    assert ns.export == "onnx" and ns.net == "mlp" and not ns.eval_only


def test_eval_without_ckpt_is_a_clean_error(capsys):
    assert main(["eval"]) == 2
    err = capsys.readouterr().err
    assert "--ckpt" in err and "mstrain eval --help" in err and "Traceback" not in err


def test_unknown_command(capsys):
    assert main(["fly"]) == 2
    assert "Unknown command 'fly'" in capsys.readouterr().err


def test_summary_counts_every_parameter(capsys):
    import mindspore  # noqa: F401  (the summary builds the network)

    from trainer.networks import build_network

    assert main(["summary", "--net", "lenet"]) == 0
    out = capsys.readouterr().out
    built = build_network("lenet")
    total = sum(p.size for p in built.cell.get_parameters())
    own = [int(m.replace(",", "")) for m in re.findall(r"^\S+ \(\w+\)\s+\[.*?\]\s+([\d,]+)$",
                                                        out, re.M)]
    assert sum(own) == total == 61_684  # MindSpore's tutorial LeNet: convolutions without bias
    assert f"Total params: {total:,}" in out and "Trainable params: 61,684" in out
    assert "fc1 (Dense)  " in out and "[1, 120]" in out and "[1, 6, 28, 28]" in out
    # The pooling is one layer (its inner cells are not listed), at both of its places.
    assert re.findall(r"^max_pool2d \(MaxPool2x2\)\s+(\[.*?\])", out, re.M) == [
        "[1, 6, 14, 14]", "[1, 16, 5, 5]"]
    assert "max_pool2d." not in out


def test_every_field_is_in_a_help_group():
    for name, f in CONFIG_FIELDS.items():
        assert f.metadata["group"], name
