"""The command line: flags over YAML, callback specs, exit status 2, MindSpore left unimported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import config_error, write_yaml
from trainer.cli import build_parser, parse_args, parse_callback_spec
from trainer.config import CONFIG_FIELDS, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_parse_args_without_flags_gives_the_defaults():
    ns = parse_args([])
    assert ns.config == TrainConfig().validate()
    assert (ns.resume, ns.init_from, ns.eval_only, ns.ckpt) == (None, None, False, None)


def test_cli_flags_override_yaml(tmp_path):
    path = write_yaml(tmp_path, "net: mlp\nepochs: 4\nlr: 0.2\nplot: true\nbatch_size: 16\n")
    cfg = parse_args(["--config", str(path), "--lr", "0.05"]).config
    assert cfg.lr == 0.05
    assert (cfg.net, cfg.epochs, cfg.batch_size) == ("mlp", 4, 16)
    cfg = parse_args(["--config", str(path), "--no-plot", "--epochs", "2",
                      "--lr-milestones", "1", "2"]).config
    assert (cfg.plot, cfg.epochs, cfg.lr, cfg.lr_milestones) == (False, 2, 0.2, [1, 2])


def test_every_cli_option_has_a_flag():

    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    for name, f in CONFIG_FIELDS.items():
        if f.metadata.get("cli", True):
            assert "--" + name.replace("_", "-") in flags, name


def test_wrong_types_on_the_command_line_are_refused():
    message = config_error(parse_args, ["--epochs", "ten"])
    assert "--epochs" in message and "'ten'" in message and "int" in message
    message = config_error(parse_args, ["--lr", "fast"])
    assert "--lr" in message and "'fast'" in message


def test_unknown_flag_is_refused():
    message = config_error(parse_args, ["--epochz", "3"])
    assert "--epochz" in message and "--help" in message


def test_missing_config_file_is_refused(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = config_error(parse_args, ["--config", str(path)])
    assert str(path) in message and "does not exist" in message


def test_eval_only_needs_ckpt_and_ckpt_needs_eval_only():
    assert "--ckpt" in config_error(parse_args, ["--eval-only"])
    assert "--eval-only" in config_error(parse_args, ["--ckpt", "x.ckpt"])
    assert "--init-from" in config_error(parse_args, ["--resume", "auto", "--init-from", "x"])


@pytest.mark.parametrize("spec, expected", [
    ("pkg.mod:Class", {"class": "pkg.mod:Class", "args": {}}),
    ("pkg.mod:Class()", {"class": "pkg.mod:Class", "args": {}}),
    ("pkg.mod:Class(a=1, b='x')", {"class": "pkg.mod:Class", "args": {"a": 1, "b": "x"}}),
    (" pkg.mod.Class(flag=True, xs=[1, 2.5], d={'k': None}, n=-3) ",
     {"class": "pkg.mod.Class", "args": {"flag": True, "xs": [1, 2.5], "d": {"k": None},
                                         "n": -3}}),
    ("m:C(path='a(b)c', s=\"it's\")", {"class": "m:C", "args": {"path": "a(b)c", "s": "it's"}}),
])
def test_callback_flag_is_parsed(spec, expected):
    assert parse_callback_spec(spec) == expected


@pytest.mark.parametrize("spec", [
    "pkg.mod:f(x=os.system('x'))",
    "pkg.mod:f(x=__import__('os'))",
    "pkg.mod:f(x=1 + 2j * y)",
    "pkg.mod:f(1, 2)",
    "pkg.mod:f(**{'a': 1})",
    "pkg.mod:f(a=1",
    "pkg.mod:f(a=1) extra",
    "pkg.mod:f(a=1)(b=2)",
    "pkg.mod:f(a=1).attr",
    "pkg.mod:f(a=[x for x in y])",
])
def test_callback_flag_refuses_code(spec):
    message = config_error(parse_callback_spec, spec)
    assert "--callback" in message and "literal" in message


def test_callback_flags_add_to_yaml_callbacks(tmp_path):
    path = write_yaml(tmp_path, "callbacks:\n  - {class: a.B, args: {x: 1}}\n")
    cfg = parse_args(["--config", str(path), "--callback", "c.d:E(y=2)",
                      "--callback", "f.g:H"]).config
    assert cfg.callbacks == [{"class": "a.B", "args": {"x": 1}},
                             {"class": "c.d:E", "args": {"y": 2}},
                             {"class": "f.g:H", "args": {}}]


def test_callback_flag_with_code_is_refused_by_parse_args():
    message = config_error(parse_args, ["--callback", "m:C(x=os.system('echo hi'))"])
    assert "os.system" in message


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_help_works_without_importing_mindspore():
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--config", "--net", "--batch-size", "--lr", "--callback", "--eval-only",
                 "--ckpt", "--resume", "--no-download", "--data-source"):
        assert flag in result.stdout
    code = ("import sys, trainer.cli\n"
            "trainer.cli.build_parser()\n"
            "try:\n"
            "    trainer.cli.main(['--help'])\n"
            "except SystemExit as exc:\n"
            "    status = exc.code\n"
            "print('RESULT', status, 'mindspore' in sys.modules)\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "RESULT 0 False"


def test_config_errors_exit_2_without_importing_mindspore(tmp_path):
    bad_yaml = write_yaml(tmp_path, "epochs: [\n")
    unknown = write_yaml(tmp_path, "epoch: 3\n", name="unknown.yaml")
    cases = [["--epochs", "0"], ["--batch-size", "0"], ["--lr", "0"], ["--net", "resnet"],
             ["--optimizer", "lamb"], ["--config", str(bad_yaml)],
             ["--config", str(unknown)], ["--eval-only"],
             ["--callback", "m:C(x=os.system('x'))"], ["--epochs", "ten"]]
    code = ("import contextlib, io, sys, trainer.cli\n"
            f"for argv in {cases!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        status = trainer.cli.main(argv)\n"
            "    lines = [l for l in err.getvalue().splitlines() if l.startswith('error:')]\n"
            "    print('RESULT', status, len(lines))\n"
            "print('MINDSPORE', 'mindspore' in sys.modules)\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "MINDSPORE False"
    assert lines[:-1] == ["RESULT 2 1"] * len(cases)
