"""The GPU a benchmark runs on: its name, its dense bf16 peak, waiting for it, its peak memory."""

from __future__ import annotations

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, no sparsity


def sync(device: str = "cuda") -> None:
    """Wait for the GPU (a no-op on the CPU): timings close only when the work is done."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def card(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"


def peak_flops(name: str) -> float | None:
    """The card's dense bf16 FLOP/s for MFU, or None for a card not in the table."""
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def peak_memory_gb(device: str, digits: int = 2) -> float | None:
    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 1e9, digits)
