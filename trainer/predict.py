"""Prediction under its earlier name: preprocessing and inference are in
:mod:`trainer.serving.predict` and the command line in :mod:`trainer.cli.predict`; this name stays
so that ``from trainer.predict import network_inputs`` keeps working."""

from trainer.cli.predict import main  # noqa: F401
from trainer.serving.predict import (  # noqa: F401
    collect_inputs,
    fit_digit,
    load_image,
    network_inputs,
    predict_probabilities,
    to_mnist,
)
