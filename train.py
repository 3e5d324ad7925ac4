"""Train an oriented-box EfficientDet: ``python train.py <run_name> <seed> [--config X] [key=value ...]``.

The same command is installed as ``obbdet-train``; the code is ``obbdet/cli/train.py`` (``--help`` there).
"""
import sys

from obbdet.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
