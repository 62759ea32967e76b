"""Hyperparameter search with Optuna: ``mstrain tune --config configs/tune_lenet.yaml``.

A study draws values for the options its recipe's ``search`` space names, trains each trial as an
ordinary run, prunes poor trials after an epoch (:class:`callbacks.OptunaPruning`), keeps its
trials in Optuna's storage so it can be continued and shared by worker processes and machines,
and writes the best trial as a recipe. Importing this package does not import Optuna or
MindSpore; see docs/tuning.md.

Example:
    >>> from trainer.tune import load_tune_recipe
    >>> recipe = load_tune_recipe("configs/tune_lenet.yaml")
    >>> recipe.space.names[:2]
    ['lr', 'batch_size']
"""

from trainer.tune.recipe import TuneRecipe, TuneSettings, load_tune_recipe
from trainer.tune.space import Param, SearchSpace


def main(argv=None, prog: str = "mstrain tune") -> int:
    """Runs ``mstrain tune`` (see :mod:`trainer.tune.cli`); returns the exit status."""
    from trainer.tune.cli import main as run

    return run(argv, prog)


__all__ = ["Param", "SearchSpace", "TuneRecipe", "TuneSettings", "load_tune_recipe", "main"]
