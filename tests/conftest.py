"""Shared test fixtures.

Tests that read the real aerial fixtures look for ``../shared/fixtures`` beside the project (or
``$OBBDET_FIXTURES``) and skip with a clear reason when it is absent, so a bare clone still passes.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(os.environ.get("OBBDET_FIXTURES", PROJECT_ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-imagery fixtures folder; skips the test when it is not there."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES_DIR} (set OBBDET_FIXTURES to point at them)")
    return FIXTURES_DIR


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a shared, oversubscribed CPU, multi-threaded convolutions spin and run many times
    slower; the tests that use it check results, not speed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint: the ``tiny`` variant (obbdet_micro) trained for one short epoch on synthetic scenes.

    Trained once per test session, also under pytest-xdist (the workers share it through a file lock).
    """
    from filelock import FileLock

    from obbdet.cli import train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # per session, shared by workers
    ckpt = shared / "infer_tiny_run" / "tiny" / "last.pt"
    with FileLock(str(shared / "infer_tiny_run.lock")):
        if not ckpt.is_file():
            rc = train.main(["tiny", "0", "--config", "tiny", "--no-progress", f"train.out_dir={ckpt.parents[1]}",
                             f"data.synthetic_cache={shared / 'infer_tiny_cache'}", "train.epochs=1",
                             "train.threads=1"])
            assert rc == 0 and ckpt.is_file()
    return ckpt
