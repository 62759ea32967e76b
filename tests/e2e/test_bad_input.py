"""User mistakes end with exit status 2 and one ``error:`` paragraph, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_train
from trainer.data.idx import SPLIT_FILES, read_idx, write_idx

TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]
TEST_IMAGES, TEST_LABELS = SPLIT_FILES["test"]


def user_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Checks the failure's shape and returns the error paragraph on one line."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert all(line.startswith("usage:") for line in lines[:start]), result.stderr
    paragraph = lines[start:]
    assert all(line.strip() for line in paragraph), "the message is one paragraph"
    message = " ".join(" ".join(paragraph).split())
    for needle in needles:
        assert needle in message, message
    return message


def no_run_dir(cwd: Path) -> None:
    runs = cwd / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def no_half_written_files(root: Path, before: dict[str, bytes]) -> None:
    """Every file under ``root`` is untouched, or new and a complete IDX file; no temporaries."""
    after = snapshot(root)
    assert [p for p in after if Path(p).name.startswith(".")] == []
    for name, content in after.items():
        if name in before:
            assert content == before[name], f"{name} was changed"
        else:
            read_idx(root / name)  # raises on a partial file
    assert set(before) <= set(after)


@pytest.fixture
def data_copy(tmp_path, digits_dir) -> Path:
    return Path(shutil.copytree(digits_dir, tmp_path / "data"))


# ----------------------------------------------------------------------- configuration mistakes
@pytest.mark.parametrize("args, needles", [
    (["--epochs", "0"], ["'epochs'", "0", "at least 1"]),
    (["--batch-size", "0"], ["'batch_size'", "0", "at least 1"]),
    (["--lr", "0"], ["'lr'", "0.0", "above 0"]),
    (["--lr", "-0.5"], ["'lr'", "-0.5", "above 0"]),
    (["--net", "resnet"], ["'net'", "'resnet'", "lenet", "mlp"]),
    (["--optimizer", "lamb"], ["--optimizer", "lamb", "momentum"]),
    (["--epochs", "many"], ["--epochs", "'many'"]),
    (["--eval-only"], ["--eval-only", "--ckpt"]),
    (["--callback", "m:C(x=os.system('rm -rf x'))"], ["--callback", "literal"]),
])
def test_bad_options(train_cli, tmp_path, args, needles):
    user_error(train_cli(*args), *needles)
    no_run_dir(tmp_path)


def test_invalid_yaml(train_cli, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("net: lenet\nepochs: 3\n  lr: 0.1\n")
    user_error(train_cli("--config", str(recipe)), str(recipe), "not valid YAML", "line 3")


def test_unreadable_yaml(train_cli, tmp_path):
    recipe = tmp_path / "binary.yaml"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    user_error(train_cli("--config", str(recipe)), str(recipe), "cannot be read")
    user_error(train_cli("--config", str(tmp_path)), str(tmp_path), "cannot be read")
    user_error(train_cli("--config", str(tmp_path / "none.yaml")), "none.yaml", "does not exist")


def test_unknown_yaml_key(train_cli, tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("epochs: 2\nlearning_rate: 0.1\n")
    user_error(train_cli("--config", str(recipe)), str(recipe), "'learning_rate'")


def test_yaml_value_of_the_wrong_type(train_cli, tmp_path):
    recipe = tmp_path / "types.yaml"
    recipe.write_text("batch_size: thirty-two\n")
    user_error(train_cli("--config", str(recipe)), "'batch_size'", "'thirty-two'",
               "whole number")


# ---------------------------------------------------------------------------- network mistakes
def test_network_module_not_found(train_cli, tmp_path, digits_dir):
    result = train_cli("--net", "no_such_netmod:build", "--data-dir", str(digits_dir))
    user_error(result, "'no_such_netmod'", "cannot be imported")
    no_run_dir(tmp_path)


def test_network_module_with_a_syntax_error(train_cli, tmp_path, digits_dir):
    (tmp_path / "brokennet.py").write_text("def build(num_classes=10):\n    return (\n")
    result = train_cli("--net", "brokennet:build", "--data-dir", str(digits_dir))
    user_error(result, "'brokennet'", "SyntaxError")


def test_network_factory_raising(train_cli, tmp_path, digits_dir):
    (tmp_path / "failnet.py").write_text(
        "def build(num_classes=10):\n    raise ValueError('needs 3 channels')\n")
    result = train_cli("--net", "failnet:build", "--data-dir", str(digits_dir))
    user_error(result, "'failnet:build'", "ValueError", "needs 3 channels")


@pytest.mark.parametrize("spec, needles", [
    ("json:JSONDecoder", ["JSONDecoder", "not a mindspore.train.Callback"]),
    ("userpkg.hooks:HookRecorder(nope=1)", ["'userpkg.hooks:HookRecorder'", "nope",
                                            "could not be created"]),
    ("userpkg.hooks:NoSuchCallback", ["'userpkg.hooks:NoSuchCallback'", "no attribute"]),
])
def test_bad_callback(train_cli, tmp_path, digits_dir, spec, needles):
    result = train_cli("--callback", spec, "--data-dir", str(digits_dir), "--no-progress",
                       env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    user_error(result, *needles)
    no_run_dir(tmp_path)


# ------------------------------------------------------------------------------- data mistakes
def test_missing_data_without_download(train_cli, tmp_path):
    empty = tmp_path / "nothing-here"
    message = user_error(train_cli("--data-dir", str(empty), "--no-download", "--no-progress"))
    for split, names in SPLIT_FILES.items():
        for name in names:
            assert f"{split}/{name}" in message  # the four files
    assert str(empty / "train") in message and str(empty / "test") in message  # where to put them
    assert "https://" in message  # where to get them
    assert "--data-source synthetic" in message
    no_run_dir(tmp_path)


def _truncate_images(root: Path) -> tuple[Path, str]:
    path = root / "train" / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-1000])
    return path, "truncated"


def _bad_magic(root: Path) -> tuple[Path, str]:
    path = root / "test" / TEST_LABELS
    data = bytearray(path.read_bytes())
    data[:2] = b"PK"
    path.write_bytes(bytes(data))
    return path, "magic"


def _count_mismatch(root: Path) -> tuple[Path, str]:
    path = root / "train" / TRAIN_LABELS
    labels = read_idx(path)
    write_idx(path, labels[:-7])
    return path, f"{len(labels) - 7} labels"


def _label_12(root: Path) -> tuple[Path, str]:
    path = root / "train" / TRAIN_LABELS
    labels = read_idx(path)
    labels[100] = 12
    write_idx(path, labels)
    return path, "outside 0-9 (first: 12 at index 100)"


def _images_not_28x28(root: Path) -> tuple[Path, str]:
    path = root / "test" / TEST_IMAGES
    images = read_idx(path)
    write_idx(path, images[:, :20, :20].copy())
    return path, "20x20"


@pytest.mark.parametrize("corrupt", [_truncate_images, _bad_magic, _count_mismatch, _label_12,
                                     _images_not_28x28])
def test_corrupt_data(train_cli, tmp_path, data_copy, corrupt):
    path, fault = corrupt(data_copy)
    before = snapshot(data_copy)
    result = train_cli("--data-dir", str(data_copy), "--no-progress", "--epochs", "1")
    user_error(result, str(path), fault)
    no_half_written_files(data_copy, before)
    no_run_dir(tmp_path)


def test_corrupt_gzipped_data(train_cli, tmp_path, digits_gz_dir):
    data = Path(shutil.copytree(digits_gz_dir, tmp_path / "gz"))
    path = data / "train" / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = snapshot(data)
    result = train_cli("--data-dir", str(data), "--no-progress", "--epochs", "1")
    user_error(result, str(path), "gzip")
    no_half_written_files(data, before)
    assert not (data / "train" / "decompressed").exists() or \
        not any((data / "train" / "decompressed").iterdir())
    no_run_dir(tmp_path)


def test_batch_larger_than_the_training_set(train_cli, tmp_path, digits_dir):
    result = train_cli("--data-dir", str(digits_dir), "--batch-size", "1601", "--no-progress")
    user_error(result, "'batch_size'", "1601", "1440")  # 1,600 less the held-out tenth
    no_run_dir(tmp_path)


# ------------------------------------------------------------------------- checkpoint mistakes
@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, digits_dir) -> Path:
    """A tiny finished MLP run."""
    work = tmp_path_factory.mktemp("mlp_run")
    result = run_train(["--net", "mlp", "--data-dir", str(digits_dir), "--epochs", "1",
                        "--batch-size", "100", "--no-plot", "--no-progress", "--log-every", "0",
                        "--output-dir", "runs", "--run-name", "tiny"], cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "runs" / "tiny"


def test_checkpoint_not_found(train_cli, tmp_path, digits_dir):
    missing = tmp_path / "nowhere" / "model.ckpt"
    result = train_cli("--eval-only", "--ckpt", str(missing), "--data-dir", str(digits_dir))
    user_error(result, str(missing), "does not exist")


def test_checkpoint_of_another_network(train_cli, mlp_run, digits_dir):
    result = train_cli("--eval-only", "--net", "lenet", "--ckpt", str(mlp_run), "--data-dir",
                       str(digits_dir))
    user_error(result, "does not match the network", "--net", "conv1.weight")


def test_truncated_checkpoint(train_cli, tmp_path, mlp_run, digits_dir):
    pointer = json.loads((mlp_run / "checkpoints" / "latest.json").read_text())
    good = mlp_run / "checkpoints" / pointer["file"]
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = train_cli("--eval-only", "--net", "mlp", "--ckpt", str(broken), "--data-dir",
                       str(digits_dir))
    user_error(result, str(broken), "truncated")


def test_damaged_latest_pointer(train_cli, tmp_path, mlp_run, digits_dir):
    run = Path(shutil.copytree(mlp_run, tmp_path / "copy"))
    (run / "checkpoints" / "latest.json").write_text("{not json")
    result = train_cli("--eval-only", "--net", "mlp", "--ckpt",
                       str(run / "checkpoints" / "latest.json"), "--data-dir", str(digits_dir))
    user_error(result, "latest.json", "damaged")
