"""Choosing the torch device: the one resolver that training, inference and the tools share."""
from __future__ import annotations

import torch


def resolve_device(name: str | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU; otherwise ``cpu``, ``cuda`` or ``cuda:N``.

    Raises ValueError (one line) for an unknown device, a device type other than CPU/CUDA, or CUDA asked
    for where none is available.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r} (use cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device
