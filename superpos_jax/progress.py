"""The progress display of a long run: `done %, model-steps/s, ETA` on one stderr line.

The compiled program calls `report(chunk, window)` through `jax.debug.callback` once per
full log window of every chunk; `Progress` turns those ticks into the display.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, TextIO

_sinks: list[Callable[[int, int], None]] = []


def report(chunk, window) -> None:
  """Host callback of the compiled program: forwards a tick to the active display."""
  if _sinks:
    _sinks[-1](int(chunk), int(window))


class Progress:
  """Counts ticks and rewrites one stderr line at most twice a second.

  Args:
    total_ticks: callbacks the run will make (activations x chunks x full windows).
    model_steps: models x steps of the whole run (for the rate).
    stream: where to write (default stderr).
  """

  def __init__(self, total_ticks: int, model_steps: int, stream: TextIO | None = None):
    self.stream = stream or sys.stderr
    self.total = max(1, total_ticks)
    self.models_steps_per_tick = model_steps / self.total
    self.count = 0
    self.t0 = time.perf_counter()
    self.last = 0.0

  def __call__(self, chunk: int, window: int) -> None:
    self.count += 1
    now = time.perf_counter()
    if now - self.last < 0.5 and self.count < self.total:
      return
    self.last = now
    frac = self.count / self.total
    rate = self.count * self.models_steps_per_tick / max(now - self.t0, 1e-9)
    eta = (now - self.t0) * (1 - frac) / max(frac, 1e-9)
    self.stream.write(f"\r  training {100 * frac:5.1f}% | {rate:,.0f} model-steps/s | "
                      f"ETA {eta:6.0f}s ")
    if self.count >= self.total:
      self.stream.write("\n")
    self.stream.flush()


@contextlib.contextmanager
def showing(display: Callable[[int, int], None] | None) -> Iterator[None]:
  """Routes the program's ticks to `display` while the block runs (None: nowhere)."""
  if display is None:
    yield
    return
  _sinks.append(display)
  try:
    yield
  finally:
    _sinks.pop()
