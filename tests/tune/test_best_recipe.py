"""best.yaml of a study on a source that reads a folder the user names: written without this
machine's folder, and it says to give one."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from tests.conftest import write_yaml
from trainer.tune.recipe import load_tune_recipe
from trainer.tune.results import best_recipe

RECIPE = """
search:
  lr: {low: 0.005, high: 0.05, log: true}
tune:
  trials: 2
net: lenet
epochs: 1
data_source: imagefolder
"""


def test_best_yaml_of_an_image_folder_study_is_written_and_asks_for_the_folder(tmp_path):
    recipe = load_tune_recipe(write_yaml(tmp_path, RECIPE, "tune.yaml"),
                              overrides={"data_dir": str(tmp_path / "images")})
    best = SimpleNamespace(params={"lr": 0.02}, value=0.9, number=1, user_attrs={})
    text = best_recipe(recipe, SimpleNamespace(study_name="folder"), best)
    values = yaml.safe_load(text)
    assert values["data_source"] == "imagefolder" and values["lr"] == 0.02
    assert "data_dir" not in values  # each machine names its own folder
    assert "# python train.py --config best.yaml --data-dir DIR" in text
