"""Packaging: the wheel and the editable install give one importable ``obbdet`` and working console scripts.

The new environments borrow the test environment's third-party packages through a ``.pth`` file, so nothing
is downloaded; the wheel is built from a copy of the tracked files so the checkout stays clean.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["obbdet-train", "obbdet-infer", "obbdet-eval", "obbdet-registry", "obbdet-draw", "obbdet-convert",
           "obbdet-miou", "obbdet-errors", "obbdet-stats", "obbdet-lr-finder", "obbdet-synthetic",
           "obbdet-calibrate", "obbdet-eval-tracking", "obbdet-track", "obbdet-export"]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _venv(path: Path) -> Path:
    """A bare venv that sees this environment's packages (not this checkout) through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path).stdout.strip()
    Path(site, "borrowed_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip(python: Path, *args, cwd) -> None:
    proc = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-build-isolation",
                 "-q", *args], cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _check_installed(python: Path, elsewhere: Path, expect_root: Path) -> None:
    code = ("import obbdet, obbdet.eval, obbdet.datasets_registry, obbdet.tools.convert; "
            "print(obbdet.Predictor.__module__); print(obbdet.eval.__file__)")
    proc = _run([python, "-c", code], elsewhere)
    assert proc.returncode == 0, proc.stderr
    module, eval_file = proc.stdout.split()
    assert module == "obbdet.inference.predictor"
    assert Path(eval_file).resolve().is_relative_to(expect_root.resolve())
    procs = {name: subprocess.Popen([str(python.parent / name), "--help"], cwd=elsewhere, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name in SCRIPTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "usage" in out.lower(), f"{name} --help: {err[-2000:]}"


def test_wheel_installs_one_top_level_package_and_console_scripts(tmp_path):
    source = tmp_path / "src"
    files = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                 tmp_path / "dist", source], tmp_path)
    assert proc.returncode == 0, proc.stderr
    wheel, = (tmp_path / "dist").glob("obbdet-*.whl")
    python = _venv(tmp_path / "venv")
    _pip(python, wheel, cwd=tmp_path)
    site = Path(_run([python, "-c", "import obbdet, os; print(os.path.dirname(obbdet.__path__[0]))"],
                     tmp_path).stdout.strip())
    top_level = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))}
    assert "obbdet" in top_level and not top_level & {"eval", "tools", "datasets_registry", "train", "infer"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_installed(python, elsewhere, site / "obbdet")


def test_editable_install_serves_the_checkout(tmp_path):
    python = _venv(tmp_path / "venv")
    _pip(python, "-e", ROOT, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_installed(python, elsewhere, ROOT / "eval")
