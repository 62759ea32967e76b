"""The learning-rate schedule's settings are validated once, with the options: every message
names the option, the value received and what is allowed (moved here from the schedule
module's own checks, which are gone)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from trainer.config import TrainConfig, load_config
from trainer.errors import ConfigError, UserError

BASE: dict[str, Any] = {"lr": 0.1, "epochs": 4}
ALL = "constant, step, multistep, exponential, cosine, polynomial, onecycle"


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"lr_schedule": "cosin"}, rf"'lr_schedule' is 'cosin'.*{ALL}"),
        ({"lr_schedule": "Cosine"}, r"'lr_schedule' is 'Cosine'.*Choose one of"),
        ({"lr_schedule": None}, r"'lr_schedule' is None.*a string"),
        ({"lr": 0.0}, r"'lr' is 0\.0.*above 0"),
        ({"lr": -0.1}, r"'lr' is -0\.1.*above 0"),
        ({"lr": float("nan")}, r"'lr' is NaN.*finite number"),
        ({"lr": "0.1"}, r"'lr' is '0\.1'.*number"),
        ({"lr": True}, r"'lr' is True.*number"),
        ({"epochs": 0}, r"'epochs' is 0.*at least 1"),
        ({"epochs": 2.5}, r"'epochs' is 2\.5.*whole number"),
        ({"warmup_epochs": -1.0}, r"'warmup_epochs' is -1\.0.*at least 0"),
        ({"lr_schedule": "cosine", "warmup_epochs": 4},
         r"'warmup_epochs' is 4\.0.*only 4 epoch\(s\).*shorter than the run"),
        ({"lr_schedule": "step", "warmup_epochs": 10},
         r"'warmup_epochs' is 10\.0.*shorter than the run"),
        ({"lr_schedule": "onecycle", "warmup_epochs": 1},
         r"'warmup_epochs' is 1\.0.*onecycle schedule warms up by itself"),
        ({"min_lr": -0.01}, r"'min_lr' is -0\.01.*at least 0"),
        ({"lr_schedule": "cosine", "min_lr": 0.1}, r"'min_lr' is 0\.1.*must be below --lr"),
        ({"lr_schedule": "cosine", "min_lr": 0.5}, r"'min_lr' is 0\.5.*must be below --lr"),
        ({"lr_schedule": "cosine", "min_lr": 0.2}, r"'min_lr' is 0\.2.*must be below --lr"),
        ({"lr_schedule": "polynomial", "min_lr": 0.2}, r"'min_lr' is 0\.2.*must be below --lr"),
        ({"lr_schedule": "polynomial", "lr_power": 0.0}, r"'lr_power' is 0\.0.*above 0"),
        ({"lr_schedule": "polynomial", "lr_power": -1.0}, r"'lr_power' is -1\.0.*above 0"),
        ({"lr_schedule": "step", "lr_gamma": 0.0}, r"'lr_gamma' is 0\.0.*above 0"),
        ({"lr_schedule": "step", "lr_gamma": -0.5}, r"'lr_gamma' is -0\.5.*above 0"),
        ({"lr_schedule": "multistep", "lr_gamma": 0.0}, r"'lr_gamma' is 0\.0.*above 0"),
        ({"lr_schedule": "exponential", "lr_gamma": 1.5}, r"'lr_gamma' is 1\.5.*at most 1"),
        ({"lr_schedule": "step", "lr_step_size": 0}, r"'lr_step_size' is 0.*at least 1"),
        ({"lr_schedule": "step", "lr_step_size": 1.5}, r"'lr_step_size' is 1\.5.*whole number"),
        ({"lr_milestones": [3, 2]}, r"'lr_milestones' is \[3, 2\].*strictly increasing"),
        ({"lr_milestones": [2, 1]}, r"'lr_milestones' is \[2, 1\].*strictly increasing"),
        ({"lr_milestones": [2, 2]}, r"'lr_milestones' is \[2, 2\].*strictly increasing"),
        ({"lr_milestones": []}, r"'lr_milestones' is \[\].*non-empty"),
        ({"lr_milestones": [0, 2]}, r"'lr_milestones' is \[0, 2\].*whole epochs from 1"),
        ({"lr_milestones": [1.5]}, r"'lr_milestones' is \[1\.5\].*whole epochs"),
        ({"lr_milestones": "30,60"}, r"'lr_milestones' is '30,60'.*a list"),
        ({"lr_milestones": 30}, r"'lr_milestones' is 30.*a list"),
    ],
)
def test_schedule_settings_are_refused(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, **{**BASE, **settings})


def test_errors_are_one_paragraph_user_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(lr_schedule="warm").validate()
    error = caught.value
    assert isinstance(error, UserError)
    assert error.exit_code == 2
    assert "\n" not in str(error)
    assert re.search(r"^error: Option 'lr_schedule'", error.paragraph())
