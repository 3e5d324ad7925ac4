"""The registry's start-up table: images used per virtual epoch and available, per-class counts, class
routes, per-dataset car widths, skipped records and integrity findings. Each function reads a built
``Registry`` (``datasets_registry.config``), which imports this module when it prints its table."""
from __future__ import annotations

from collections import Counter

from .integrity import DUPLICATE
from .scale import format_widths


def format_summary_table(registry) -> str:
    classes = list(registry.classes)
    header = ["used/avail", "dataset", "type", "val", *classes, "ignored", "skipped"]
    rows = []
    for r in registry.reports:
        objects = r.train_objects + r.val_objects
        rows.append([f"{r.quota}/{r.train_images}", r.config.name, r.config.type, str(r.val_images),
                     *(str(objects[c]) for c in classes), str(sum(r.mapping.ignored.values())),
                     str(r.summary.n_skipped)])
    train_objects = sum((r.train_objects for r in registry.reports), Counter())
    val_objects = sum((r.val_objects for r in registry.reports), Counter())
    totals = [
        [f"{registry.samples_per_epoch}/{len(registry.train)}", "training total", "", "",
         *(str(train_objects[c]) for c in classes), "", ""],
        ["", "validation total", "", str(len(registry.val)), *(str(val_objects[c]) for c in classes), "", ""],
    ]
    lines = [f"dataset registry: {len(registry.reports)} datasets, classes {', '.join(classes)}, "
             f"{registry.samples_per_epoch} training samples per virtual epoch, seed {registry.config.seed}",
             "(used/avail: images drawn per virtual epoch / training images; val: validation images; class "
             "columns: objects in train + val)"]
    lines += _columns([header, *rows, None, *totals])
    lines += format_widths([(r.config.name, r.width) for r in registry.reports if r.width is not None],
                           registry.vehicle_width, registry.main_class)
    lines += _routes(registry)
    lines += _skips(registry)
    lines += _findings(registry)
    return "\n".join(lines)


def _columns(rows: list) -> list[str]:
    table = [r for r in rows if r is not None]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    right = {0, 3} | set(range(4, len(widths)))
    out = []
    for row in rows:
        if row is None:
            out.append("  ".join("-" * w for w in widths))
            continue
        out.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return out


def _routes(registry) -> list[str]:
    lines = ["class map (native -> unified: objects):"]
    for r in registry.reports:
        routes = ", ".join(f"{native} -> {target}: {n}" for (native, target), n in sorted(r.mapping.routes.items()))
        lines.append(f"  {r.config.name}: {routes or 'no objects'}")
    return lines


def _findings(registry, shown: int = 5) -> list[str]:
    """The integrity findings: duplicates (the first few and a count), ambiguous stems, class map warnings."""
    if not registry.findings:
        return []
    errors = any(f.error for f in registry.findings)  # only with check=True; otherwise they were raised
    text = str if errors else (lambda f: f.message)  # "error:"/"warning:" prefixes only when both can occur
    lines = ["problems:" if errors else "warnings:"]
    duplicates = [f for f in registry.findings if f.kind == DUPLICATE]
    for finding in duplicates[:shown]:
        lines.append(f"  {text(finding)}" + ("" if finding.error else "; the copy is dropped"))
    if len(duplicates) > shown:
        lines.append(f"  ... {len(duplicates) - shown} more duplicate images")
    lines += [f"  {text(f)}" for f in registry.findings if f.kind != DUPLICATE]
    return lines


def _skips(registry) -> list[str]:
    lines = []
    for r in registry.reports:
        if r.summary.skipped or r.summary.notes:
            lines.append(f"  {r.summary.format()}")
    return ["import reports:", *lines] if lines else []
