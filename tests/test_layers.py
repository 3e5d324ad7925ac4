"""The import graph: layers point down only, and no module imports in a cycle.

Layers (installed names; the checkout's ``eval/``, ``datasets_registry/`` and ``tools/`` are ``obbdet.eval``,
``obbdet.datasets_registry`` and ``obbdet.tools``):

0. core: box geometry, IoU, NMS, label structures and formats, image and file I/O, device choice;
1. data, evaluation and the model: ``obbdet.datasets_registry``, ``obbdet.eval``, augmentation, drawing, the
   torch dataset, the network, configs and checkpoints;
2. orchestration: training, inference, the CLIs;
3. tools.

Every import counts, also those inside functions (a cycle hidden in a function still is one).
"""
from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"obbdet": "obbdet", "eval": "obbdet.eval", "datasets_registry": "obbdet.datasets_registry",
           "tools": "obbdet.tools"}
LAYERS = [  # (pattern, layer): the first match decides
    ("obbdet", 0), ("obbdet.boxes", 0), ("obbdet.iou", 0), ("obbdet.pairs", 0), ("obbdet.nms*", 0),
    ("obbdet.structures", 0), ("obbdet.formats*", 0), ("obbdet.label_*", 0), ("obbdet.io_utils", 0),
    ("obbdet.imageio", 0), ("obbdet.device", 0), ("obbdet.raster", 0), ("obbdet.georef_output", 0),
    ("obbdet.video", 0), ("obbdet.frames", 0), ("obbdet.box_voting", 0),
    ("obbdet.eval.tracking*", 1),  # tracking metrics: numpy, scipy and TrackEval's metric code, no obbdet.tracking
    ("obbdet.datasets_registry.synthetic_traffic*", 1),  # synthetic traffic sequences (frames, labels, videos)
    ("obbdet.datasets_registry*", 1), ("obbdet.eval*", 1), ("obbdet.augment", 1), ("obbdet.visualize", 1),
    ("obbdet.data", 1), ("obbdet.model*", 1), ("obbdet.config", 1), ("obbdet.checkpoint", 1),
    ("obbdet.optim", 1), ("obbdet.distributed", 1), ("obbdet.calibration", 1),
    ("obbdet.tracking*", 1),  # the tracker: numpy, scipy and the core only
    ("obbdet.tools*", 3),
    ("obbdet.*", 2),
]


def module_files() -> dict[str, Path]:
    """``{module name: file}`` for every module of the project, under its installed name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """Project modules that ``name`` (at ``path``) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                       for alias in node.names]
        else:
            continue
        for target in targets:
            for prefix in ("eval", "datasets_registry", "tools"):  # checkout spellings of the same modules
                if target == prefix or target.startswith(prefix + "."):
                    target = "obbdet." + target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer_of(name: str) -> int:
    return next(layer for pattern, layer in LAYERS if fnmatch(name, pattern))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_graph_sees_the_project(graph):
    assert {"obbdet.boxes", "obbdet.eval.core", "obbdet.datasets_registry.dota", "obbdet.inference.predictor",
            "obbdet.tools.convert"} <= set(graph)
    assert "obbdet.boxes" in graph["obbdet.iou"] and "obbdet.eval.core" in graph["obbdet.eval.api"]


def test_layers_point_down(graph):
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name, targets in sorted(graph.items()) for target in sorted(targets)
              if layer_of(target) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_core_imports_only_core(graph):
    core = {name for name in graph if layer_of(name) == 0}
    assert {"obbdet.boxes", "obbdet.iou", "obbdet.nms", "obbdet.formats", "obbdet.imageio"} <= core
    bad = [f"{name} imports {target}" for name in sorted(core) for target in sorted(graph[name] - core)]
    assert not bad, "\n".join(bad)


def test_eval_does_not_import_the_registry(graph):
    bad = [f"{name} imports {target}" for name, targets in graph.items() if name.startswith("obbdet.eval")
           for target in targets if target.startswith("obbdet.datasets_registry")]
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_detects_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_in_a_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
