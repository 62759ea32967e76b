"""Train LeNet-5 (or another network) on MNIST: ``python train.py --net lenet --epochs 10``.

See ``python train.py --help`` and README.md.
"""

import sys

from trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
