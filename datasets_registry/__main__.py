"""``python -m datasets_registry CONFIG``: build the registry of a YAML config and print its start-up table.

``--check`` reports every integrity problem instead of stopping at the first: the same image twice (train/val
leaks), label files with several image files, class_map keys that name no class, classes left empty by
``ignore``. Exit status: 0 when nothing is wrong (warnings allowed), 1 when a finding is an error under the
config's ``strict`` setting, 2 when the registry cannot be built at all.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .config import build_registry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets_registry", description=__doc__)
    parser.add_argument("config", help="registry config (YAML)")
    parser.add_argument("--no-cache", action="store_true", help="parse every dataset, ignoring the annotation cache")
    parser.add_argument("--epochs", type=int, default=0, help="also print the per-dataset draws of the first N epochs")
    parser.add_argument("--vehicle-width", type=float, default=None, metavar="PX",
                        help="the common training car width (data.vehicle_width): show each dataset's car width "
                             "after resampling to it")
    parser.add_argument("--main-class", default="car", help="the class whose width is measured (data.main_class)")
    parser.add_argument("--check", action="store_true",
                        help="list the duplicate images, ambiguous image stems and class map problems; exit 1 when "
                             "one is an error (strict), 0 when there are none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        registry = build_registry(args.config, cache=False if args.no_cache else None,
                                  vehicle_width=args.vehicle_width, main_class=args.main_class, check=args.check)
    except (OSError, ValueError) as exc:  # config errors, malformed labels (file and line), missing folders
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(registry.summary_table())
    if args.epochs:
        _print_epochs(registry, args.epochs)
    if args.check:
        return _report_check(registry, args.config)
    return 0


def _report_check(registry, config) -> int:
    errors = [f for f in registry.findings if f.error]
    for finding in registry.findings:
        print(f"{config}: {finding}", file=sys.stderr if finding.error else sys.stdout)
    warnings = len(registry.findings) - len(errors)
    print(f"check {config}: {len(errors)} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def _print_epochs(registry, epochs: int) -> None:
    import numpy as np

    sampler = registry.sampler()
    bounds = np.cumsum([0, *registry.train_sizes])
    names = [r.config.name for r in registry.reports]
    for epoch in range(epochs):
        indices = sampler.epoch_indices(epoch)
        per_dataset = np.bincount(np.searchsorted(bounds, indices, side="right") - 1, minlength=len(names))
        print(f"epoch {epoch}: " + ", ".join(f"{n} {c}" for n, c in zip(names, per_dataset)))


if __name__ == "__main__":
    sys.exit(main())
