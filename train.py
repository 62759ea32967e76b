"""Train LeNet-5 (or another network) on MNIST: ``python train.py --net lenet --epochs 10``.

See ``python train.py --help`` and README.md.
"""

from trainer.cli import main
from trainer.cli.exit import exit_process

if __name__ == "__main__":
    exit_process(main())
