"""config.yaml and the bundles record the values a run used, not the options left empty."""

from __future__ import annotations

from pathlib import Path

from trainer import TrainConfig, Trainer


def test_defaults_left_empty_are_recorded_as_the_values_used(tmp_path):
    trainer = Trainer(TrainConfig(output_dir=str(tmp_path), data_source="synthetic"))
    resolved = trainer.resolved_config()
    assert resolved.data_dir == str(Path("data") / "synthetic")
    assert resolved.run_name == trainer.run_dir.name and resolved.run_name.startswith("lenet-")
    assert trainer.config.run_name == "" and trainer.config.data_dir == ""  # not changed
    assert resolved.fingerprint() == trainer.config.fingerprint()  # resume matches as before


def test_values_given_are_recorded_as_given(tmp_path):
    trainer = Trainer(TrainConfig(output_dir=str(tmp_path), data_dir="~/digits", run_name="a"))
    resolved = trainer.resolved_config()
    assert resolved.run_name == "a"
    assert resolved.data_dir == str(Path("~/digits").expanduser())


def test_a_tracking_uri_is_recorded_without_its_password(tmp_path):
    trainer = Trainer(TrainConfig(output_dir=str(tmp_path), report_to="mlflow",
                                  mlflow_uri="http://me:s3cret@host:5000/?token=abc"))
    recorded = trainer.resolved_config().mlflow_uri
    assert "s3cret" not in recorded and "abc" not in recorded
    assert recorded.startswith("http://me:***@host:5000/")
