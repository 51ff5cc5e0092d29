"""Threads for CPU work: torch's intra-op setting, and independent tasks side by side.

On a CPU, the quantizer's work (k-means of each attribute, view importance, evaluation renders)
is a long series of mid-sized torch passes. A second intra-op thread barely speeds such a pass
up, and on a loaded machine every pass waits for that thread to be scheduled (measured: a log of
60k doubles 22 ms on two threads, 0.5 ms on one, at load 7-11 on 2 cores; BENCHMARKS §2 CPU).
Independent tasks therefore run side by side, one intra-op thread each (``cpu_map``): every op
runs on one thread either way, so the results are the bits of a one-thread run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run torch's CPU ops on n threads inside, restore the setting after."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_map(fn: Callable[[T], R], items: Iterable[T], device: torch.device | str) -> Iterator[R]:
    """``map(fn, items)``, the results in order; on the CPU with n >= 2 intra-op threads, on
    min(n, len(items)) threads of one intra-op thread each. Elsewhere (CUDA) one after the other.

    An exception from ``fn`` comes out where its result would; closing the iterator early (an
    exception in the caller's loop, a cancel) starts no further item and waits for the running
    ones. The intra-op setting is restored when the iterator finishes.
    """
    todo = list(items)
    workers = min(len(todo), torch.get_num_threads()) if torch.device(device).type == "cpu" else 1
    if workers <= 1:
        yield from map(fn, todo)
        return
    with intra_op_threads(1), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cpu-map") as pool:
        futures = [pool.submit(fn, item) for item in todo]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()


__all__ = ["cpu_map", "intra_op_threads"]
