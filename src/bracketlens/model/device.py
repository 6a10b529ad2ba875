"""The ``--device`` option: which torch device a command trains or runs on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from bracketlens.errors import BracketLensError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(name: str) -> str:
    """Check that ``name`` ("cpu", "cuda" or "cuda:N") is a device this torch can use."""
    if not _DEVICE.fullmatch(name):
        raise BracketLensError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BracketLensError(
                f"--device {name}: this torch has no usable CUDA GPU; use --device cpu"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise BracketLensError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA devices are visible"
            )
    return name


@contextmanager
def on_device(name: str) -> Iterator[str]:
    """Validate ``name``; off the CPU, also make it torch's default device meanwhile.

    A command run inside this context builds its model, data and intermediate
    tensors on the device without naming it (a path not run on a GPU in the tests). On the
    CPU nothing is installed, so the CPU path pays no per-operation cost.
    """
    device = resolve_device(name)
    if device == "cpu":
        yield device
        return
    with torch.device(device):
        yield device


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on exactly one thread, whatever the caller had: the thread
    count changes how sums round, so a run that must be reproducible bit for bit uses one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
