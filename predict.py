"""Predict the digits in your own images: ``python predict.py --ckpt runs/demo digit.png``.

See ``python predict.py --help`` and README.md.
"""

from trainer.cli.exit import exit_process
from trainer.cli.predict import main

if __name__ == "__main__":
    exit_process(main())
