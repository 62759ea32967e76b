"""Data sources: what a source must give (checked before training), a user's own source as
``pkg.module:factory`` (checked before it is called) and as an object given to ``Trainer``, each
trained until it learns, resumed exactly, with its normalisation computed once and recorded."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import train_here
from trainer.config import TrainConfig
from trainer.data.sources import ArraySource, Source, make_source
from trainer.errors import ConfigError, DataError

# A source of colour images whose class is the channel of a bright band: an easy task that any
# network learns in an epoch, so the tests can ask for it.
USER_SOURCE = textwrap.dedent("""
    import numpy as np

    from trainer.data.sources import ArraySource, Source


    def split(count, seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 3, count)
        images = rng.integers(0, 60, (count, 3, 16, 16)).astype(np.uint8)
        for k in range(3):
            images[labels == k, k, 4:12, :] += 150
        return images, labels


    def bands(seed=0):
        return ArraySource(split(240, 1 + seed), split(60, 2), class_names=["red", "green", "blue"],
                           name="bands")


    class FloatImages(Source):
        name = "floats"

        def prepare(self, *, fetch=True):
            from trainer.data.sources import SourceInfo

            return SourceInfo(channels=3, image_size=16, class_names=("a", "b", "c"),
                              counts={"train": 240, "test": 60})

        def key(self, split):
            return "floats-" + split

        def load(self, split):
            images, labels = globals()["split"](240 if split == "train" else 60, 1)
            return images.astype(np.float32), labels


    def needs_a_path(path):
        raise AssertionError("called")


    not_a_source = [1, 2, 3]


    def returns_a_list(seed=0):
        return [1, 2, 3]
""")


def _split(count: int, seed: int, channels: int = 3, side: int = 16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.integers(0, 60, (count, channels, side, side)).astype(np.uint8)
    for k in range(3):
        images[labels == k, k % channels, 4:12, :] += 150
    return images, labels


@pytest.fixture
def user_dir(tmp_path) -> Path:
    (tmp_path / "usersource.py").write_text(USER_SOURCE)
    return tmp_path


# ------------------------------------------------------------------------ what a source gives
@pytest.mark.parametrize("change, first", [
    (lambda x, y: (x.astype(np.float32), y), "the images are float32 arrays, not uint8"),
    (lambda x, y: (x[:, 0], y), "the images have shape [240, 16, 16], not [N, C, S, S]"),
    (lambda x, y: (x[:, :2], y), "the images have shape [240, 2, 16, 16]"),
    (lambda x, y: (x[:, :, :, :8], y), "the images have shape [240, 3, 16, 8]"),
    (lambda x, y: (x, y[:-1]), "240 images but labels of shape [239]"),
    (lambda x, y: (x, y.astype(np.float64)), "the labels are float64, not whole numbers"),
    (lambda x, y: (x, np.where(np.arange(len(y)) == 5, -1, y)), "label -1 is outside"),
])
def test_arrays_of_another_form_are_refused(change, first):
    with pytest.raises(DataError) as info:
        ArraySource(change(*_split(240, 1)), _split(60, 2))
    message = " ".join(str(info.value).split())
    assert message.startswith("Data source 'arrays', train split: ")
    assert first in message and "uint8 images shaped [N, C, S, S]" in message


@pytest.mark.parametrize("names, first", [
    (["a", "b"], "label 2 is outside 0-1 (the source has 2 classes)"),
    (["only"], "there are 1 classes; training needs from 2"),
    (["a", "a", "b"], "class name 'a' appears twice"),
    (["a", "", "b"], "class name '' is not a non-empty string"),
])
def test_class_names_must_cover_the_labels(names, first):
    with pytest.raises(DataError, match="Data source 'arrays'") as info:
        ArraySource(_split(240, 1), _split(60, 2), class_names=names)
    assert first in " ".join(str(info.value).split())


def test_both_splits_need_the_same_form():
    with pytest.raises(DataError, match="both splits need the same channels and size"):
        ArraySource(_split(240, 1), _split(60, 2, channels=1))


# ---------------------------------------------------------------------------- a user's source
@pytest.mark.parametrize("spec, first", [
    ("usersource:not_a_source", "is not callable (an object of type list), so it was not "
     "called: --data-source takes a trainer.data.sources.Source subclass"),
    ("usersource:needs_a_path", "requires the parameter(s) path, which the tool does not give"),
    ("usersource:missing", "has no attribute 'missing'"),
])
def test_a_users_source_is_checked_before_it_is_called(user_dir, monkeypatch, spec, first):
    monkeypatch.chdir(user_dir)
    cfg = TrainConfig(data_source=spec).validate()
    with pytest.raises(ConfigError) as info:
        make_source(cfg)
    assert first in " ".join(str(info.value).split())


def test_what_a_factory_returns_must_be_a_source(user_dir, monkeypatch):
    monkeypatch.chdir(user_dir)
    with pytest.raises(DataError, match="gave list, not a trainer.data.sources.Source"):
        make_source(TrainConfig(data_source="usersource:returns_a_list").validate())
    made = make_source(TrainConfig(data_source="usersource:bands", seed=3).validate())
    assert isinstance(made, Source) and made.name == "bands"


def _common(*extra: str) -> list[str]:
    return ["--net", "mlp", "--output-dir", "runs", "--batch-size", "16", "--val-split", "0",
            "--no-progress", "--no-plot", "--log-every", "0", "--optimizer", "adam",
            "--lr", "0.003", *extra]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    from trainer.checkpoint import load_bundle

    folder = run_dir / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / "latest.json").read_text())["file"])
    return {k: v.asnumpy() for k, v in bundle.params.items() if not isinstance(v, str)}


def test_a_users_source_trains_resumes_exactly_and_records_its_data(user_dir):
    spec = ["--data-source", "usersource:bands"]
    straight = train_here(_common(*spec, "--epochs", "2", "--run-name", "straight"), user_dir)
    assert straight.returncode == 0, straight.stderr
    history = json.loads((user_dir / "runs/straight/history.json").read_text())
    assert history["history"]["val_accuracy"][-1] >= 0.9
    first = train_here(_common(*spec, "--epochs", "1", "--run-name", "resumed"), user_dir)
    assert first.returncode == 0, first.stderr
    resumed = train_here(_common(*spec, "--epochs", "2", "--run-name", "resumed", "--resume",
                                 "auto"), user_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert _weights(user_dir / "runs/straight").keys() == _weights(user_dir / "runs/resumed").keys()
    a, b = _weights(user_dir / "runs/straight"), _weights(user_dir / "runs/resumed")
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []
    # The bundle records what evaluation, prediction and export need to know of the data.
    from trainer.checkpoint import load_bundle

    bundle = load_bundle(user_dir / "runs/straight/checkpoints/best.ckpt")
    data = bundle.meta.run.data
    assert data["class_names"] == ["red", "green", "blue"] and data["channels"] == 3
    assert data["image_size"] == 16 and data["kind"] == "natural" and data["num_classes"] == 3
    assert len(data["mean"]) == len(data["std"]) == 3 and all(s > 0 for s in data["std"])
    assert bundle.meta.run.num_classes == 3


def test_a_source_giving_other_arrays_is_one_paragraph_and_caches_nothing(user_dir):
    result = train_here(_common("--data-source", "usersource:FloatImages", "--epochs", "1",
                                "--run-name", "floats"), user_dir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: Data source 'floats', train split: the images are "
                                    "float32 arrays, not uint8 arrays.")
    assert "Traceback" not in result.stderr
    decoded = user_dir / ".cache" / "mstrain" / "decoded"
    assert not decoded.exists() or [p.name for p in decoded.iterdir()] == []


def test_trainer_takes_a_source_object(tmp_path):
    from trainer import Trainer

    source = ArraySource(_split(240, 1), _split(60, 2), class_names=["r", "g", "b"],
                         mean=[0.2, 0.2, 0.2], std=[0.3, 0.3, 0.3], name="mine")
    cfg = TrainConfig(net="mlp", epochs=1, batch_size=16, val_split=0.2, optimizer="adam",
                      lr=0.003, output_dir=str(tmp_path), run_name="obj", progress=False,
                      plot=False, log_every=0)
    trainer = Trainer(cfg, source=source)
    history = trainer.fit()
    assert history.history["val_accuracy"][-1] >= 0.8
    assert trainer.config.data_source == "mine"
    assert trainer.data_record()["mean"] == [0.2, 0.2, 0.2]  # the source's own constants
    report = trainer.evaluate(trainer.run_dir)  # on the same object's test split
    assert report["count"] == 60 and report["accuracy"] >= 0.8
    with pytest.raises(DataError, match="gave list, not a trainer.data.sources.Source"):
        Trainer(cfg, source=[1, 2])
