"""Progress reporting for long work.

Long-running core functions take ``progress: Progress | None``. They call it with a stage name,
a fraction in [0, 1] of that whole call, and optional metrics. The callback may raise
``core.errors.Cancelled`` to stop the work; callers must let it propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Progress = Callable[[str, float, Mapping[str, float]], None]


def sub_progress(progress: Progress | None, start: float, end: float) -> Progress:
    """Map a sub-task's [0, 1] onto [start, end] of the parent's progress."""

    def _p(stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        if progress is not None:
            f = min(max(fraction, 0.0), 1.0)
            progress(stage, start + (end - start) * f, metrics or {})

    return _p
