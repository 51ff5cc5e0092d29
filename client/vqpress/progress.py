"""Progress of a job (or a render) on stderr, for people and for logs.

On a terminal: a rich progress bar with the stage, elapsed time and ETA, redrawn in place. Anywhere
else (a CI log, a pipeline's captured stderr): one plain line at every change of state or stage and
then every ``interval`` seconds while the job runs, so a log never goes silent for minutes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO

from .types import JobStatus

INTERVAL_ENV = "VQPRESS_PROGRESS_INTERVAL"  # seconds between plain progress lines (default 10)
DEFAULT_INTERVAL_S = 10.0
_SHOWN_METRICS = (("step", "step {:.0f}"), ("loss", "loss {:.4f}"), ("psnr", "PSNR {:.2f} dB"),
                  ("num_gaussians", "{:.0f} Gaussians"))  # fmt: skip


def format_seconds(s: float | None) -> str:
    """1h02m03s / 4m05s / 6s; "?" when unknown."""
    if s is None or s != s or s < 0:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _interval_from_env() -> float:
    try:
        return max(0.1, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class Progress:
    """Feed it ``update(...)`` (or ``job(status)``) calls; ``close()`` when done. Thread-safe.

    ``label`` names the work ("job 1a2b…", "render"); ``enabled=False`` prints nothing; ``tty``
    overrides the terminal check (tests)."""

    def __init__(
        self,
        label: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = _interval_from_env() if interval is None else interval
        self._t0 = time.monotonic()
        self._run_t0: float | None = None  # when the work was first seen running (for the ETA)
        self._run_p0 = 0.0
        self._state, self._stage, self._fraction = "", "", 0.0
        self._metrics: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_line = 0.0
        self._bar = None
        self._task = None
        self._ticker: threading.Thread | None = None
        if not enabled:
            return
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=1.0, extra="")
        else:
            self._ticker = threading.Thread(target=self._tick, name="vqpress-progress", daemon=True)
            self._ticker.start()

    # -- input -------------------------------------------------------------------------
    def job(self, st: JobStatus) -> None:
        self.update(st.state.value.lower(), st.stage, st.progress, {} if st.terminal else st.metrics)

    def note(self, message: str) -> None:
        """A one-off line (a reconnect, a warning) that does not disturb the bar."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(message, markup=False, highlight=False)
            else:
                self.stream.write(message + "\n")
                self.stream.flush()

    def update(self, state: str, stage: str, fraction: float, metrics: Mapping[str, float] | None = None) -> None:
        if not self.enabled:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        with self._lock:
            changed = (state, stage) != (self._state, self._stage)
            if state == "running" and self._run_t0 is None:
                self._run_t0, self._run_p0 = now, fraction
            self._state, self._stage, self._fraction = state, stage, fraction
            self._metrics = dict(metrics or {})
            if self._bar is not None:
                self._bar.update(
                    self._task,  # type: ignore[arg-type]
                    completed=fraction,
                    description=f"{self.label} {state} {stage}".strip(),
                    extra=self._shown(),
                )
            elif changed or state in ("succeeded", "failed", "cancelled"):
                self._line(now)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output ------------------------------------------------------------------------
    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, from the rate since the work was first seen running; None while unknown."""
        now = time.monotonic() if now is None else now
        if self._run_t0 is None:
            return None
        done = self._fraction - self._run_p0
        if done <= 0.005 or now - self._run_t0 < 0.5:
            return None
        return (now - self._run_t0) * (1.0 - self._fraction) / done

    def _shown(self) -> str:
        return ", ".join(fmt.format(self._metrics[k]) for k, fmt in _SHOWN_METRICS if k in self._metrics)

    def _line(self, now: float) -> None:
        running = self._state == "running"
        eta = f"  eta {format_seconds(self.eta(now))}" if running else ""
        extra = self._shown()
        line = (
            f"[{100 * self._fraction:3.0f}%] {self.label} {self._state} {self._stage}".rstrip()
            + f"  elapsed {format_seconds(now - self._t0)}{eta}"
            + (f"  {extra}" if extra else "")
        )
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last_line = now

    def _tick(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            with self._lock:
                now = time.monotonic()
                if self._state in ("queued", "running", "cancelling") and now - self._last_line >= self.interval:
                    self._line(now)
