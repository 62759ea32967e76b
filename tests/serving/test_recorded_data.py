"""Evaluation and export given no data flags use the data source and folder the checkpoint's run
recorded: a run on a folder of images is evaluated on that folder, not on MNIST."""

from __future__ import annotations

import json

from tests.conftest import run_here
from trainer.checkpoint import read_checkpoint
from trainer.config import TrainConfig
from trainer.serving.loading import recorded_data

pytest_plugins = ["tests.trained"]

RECORDED = "as the checkpoint's run recorded"


def test_eval_without_data_flags_uses_the_recorded_folder(trained_lenet, tmp_path):
    from trainer.cli.commands import main

    # Another working directory, where the default data/mnist does not exist.
    result = run_here(main, ["eval", "--ckpt", str(trained_lenet.run_dir), "--results-dir",
                             str(tmp_path / "report")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--data-dir {trained_lenet.data_dir}, {RECORDED}" in result.stdout + result.stderr
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert report["count"] == trained_lenet.test_count


def test_named_data_wins_and_nothing_recorded_is_imported(trained_lenet):
    bundle = read_checkpoint(trained_lenet.checkpoint)
    cfg = recorded_data(TrainConfig(), bundle)
    assert (cfg.data_source, cfg.data_dir) == ("mnist", str(trained_lenet.data_dir))
    # A user's own source named in a checkpoint is never called: the configuration stays.
    bundle.meta.run.config["data_source"] = "evil.module:factory"
    assert recorded_data(TrainConfig(data_dir="x"), bundle).data_dir == "x"
