"""``python -m trainer.tune``: the same command as ``mstrain tune``."""

import sys

from trainer.tune.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m trainer.tune"))
