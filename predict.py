"""Predict the digits in your own images: ``python predict.py --ckpt runs/demo digit.png``.

See ``python predict.py --help`` and README.md.
"""

import sys

from trainer.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
