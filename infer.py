"""Detect vehicles in images: ``python infer.py <folder> <vehicle_width> <ckpt> obb|aabb [options]``.

The same command is installed as ``obbdet-infer``; the code is ``obbdet/cli/infer.py`` (``--help`` there).
"""
import sys

from obbdet.cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
