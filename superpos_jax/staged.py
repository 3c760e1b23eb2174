"""Training in stages with checkpoints between them: the grid's program cut at log-window
boundaries (`program.stage_programs`), the whole state checkpointed (`checkpoint.py`)
at most every so many seconds, a rerun resuming from the latest trustworthy checkpoint,
on the layout it was written with where it can (`resume_layout`).
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import checkpoint, faults
from superpos_jax.host import agreed, broadcast
from superpos_jax.plan import Plan, make_plan
from superpos_jax.program import (kind_of, program_inputs, progress_ticks, stage_programs,
                                  stage_windows)
from superpos_jax.progress import Progress, showing
from superpos_jax.spec import SpecError, SweepSpec


def _global_value(x: jax.Array) -> np.ndarray:
  """The whole of `x` on this host (on several hosts its shards are gathered: every
  process keeps the whole loss history, which is small, and saves or resumes it alike)."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _resume(plan: Plan, ckpt, states):
  """The checkpoint every process resumes from (None: start over): each process's
  latest trustworthy one, if all found the same; said on stderr, with whether the
  numbers will be bit for bit (same layout) or to float rounding (another one)."""
  spec = plan.spec
  restored = ckpt.restore(states)
  number = restored.number if restored else 0
  if agreed(number, "min") != agreed(number, "max"):
    print("warning: the processes found different checkpoints; training from step 0",
          file=sys.stderr)
    return None
  if restored is None:
    return None
  here = checkpoint.layout_record(plan)
  how = ("the same layout: the numbers are an uninterrupted run's, bit for bit"
         if checkpoint.same_layout(restored.layout, here) else
         f"written with {checkpoint.describe_layout(restored.layout)}, continued with "
         f"{checkpoint.describe_layout(here)}: the numbers equal an uninterrupted run's to "
         f"float rounding")
  step = checkpoint.steps_done(spec, restored.windows, restored.finished)
  print(f"resumed from step {step:,} of {spec.steps:,} (checkpoint {restored.number} in "
        f"{ckpt.directory}; {how})", file=sys.stderr, flush=True)
  return restored


def _save_due(last_save: float, every_s: float) -> bool:
  """Whether a periodic checkpoint is due: process 0's clock decides for every process."""
  return bool(broadcast([time.perf_counter() - last_save >= every_s])[0])


def run_staged(plan: Plan, directory: str, every_s: float):
  """`plan`'s training in stages with checkpoints in `directory`: `(arrays on device,
  compile s, run s, what the staging did)`. Resumes from the latest trustworthy one."""
  spec = plan.spec
  inputs = program_inputs(spec)
  n_windows = spec.steps // spec.log_every
  K = stage_windows(spec)
  t0 = time.perf_counter()
  first_stage = stage_programs(plan, K, False)
  states = first_stage.init(*inputs)
  ckpt = checkpoint.Checkpointer(directory, plan)
  history = [np.zeros((0, plan.facts.groups, plan.n_chunks, plan.chunk_size)
                      + kind_of(spec).history_tail(spec), np.float32)]
  restored = _resume(plan, ckpt, states)
  done, finished = 0, False
  if restored is not None:
    states, history = restored.states, [restored.history]
    done, finished = restored.windows, restored.finished
  compile_s = time.perf_counter() - t0
  ticks = progress_ticks(plan) * (n_windows - done) // max(n_windows, 1)
  display = (Progress(ticks, spec.num_models * spec.steps * (n_windows - done) // max(n_windows, 1))
             if plan.progress else None)
  saves, last_save = 0, time.perf_counter()
  with showing(display):
    t_run = time.perf_counter()
    w = done
    while not finished:
      count = min(K, n_windows - w)
      last = w + count == n_windows
      stages = stage_programs(plan, count, last)
      states, h = stages.steps(states, jnp.int32(w), *inputs)
      history.append(_global_value(h))
      w += count
      finished = last
      # Periodically; and at the end of a run that checkpointed on the way (so that a
      # crash before its result is saved loses nothing); never for a short run.
      if _save_due(last_save, every_s) or (finished and saves):
        ckpt.save(w, finished, states, np.concatenate(history))
        saves, last_save = saves + 1, time.perf_counter()
    ckpt.close()
    faults.point("training.evaluating")
    out = jax.block_until_ready(first_stage.finish(states, jnp.asarray(np.concatenate(history)), *inputs))
    run_s = time.perf_counter() - t_run
  return out, compile_s, run_s, {
      "stage_windows": K, "checkpoints_saved": saves, "checkpoint_every_s": every_s,
      "resumed_from_step": checkpoint.steps_done(spec, done, restored.finished) if restored else 0,
      **({"resumed_layout": restored.layout} if restored else {})}


def check_checkpoint_every(every) -> float:
  """`every` (seconds between checkpoints) as a float >= 0, else a one-line SpecError."""
  if isinstance(every, bool) or not isinstance(every, (int, float, np.integer, np.floating)) \
      or not (0 <= every < float("inf")):
    raise SpecError(f"checkpoint_every must be a number of seconds >= 0, got {every!r}")
  return float(every)


def resume_layout(spec: SweepSpec, directory: str, devices: Sequence, *,
                  max_memory: int | None = None, precision: str = "float32",
                  progress: bool = False) -> Plan | None:
  """The plan of the layout that the latest checkpoint of this run in `directory` was
  written with, where it can run here (same platform and device count, within
  `max_memory`): resuming on it gives the uninterrupted run's numbers bit for bit, and an
  autotuned layout needs neither a new measurement nor the cache that remembered it."""
  stored = checkpoint.stored_layout(directory, spec, precision)
  devices = tuple(devices)
  if stored is None or stored.get("devices") != len(devices) \
      or stored.get("platform", devices[0].platform) != devices[0].platform:
    return None
  try:
    return make_plan(spec, devices=devices, chunk_size=stored["chunk_size"],
                     span_seeds=stored["span_seeds"], max_memory=max_memory,
                     progress=progress, precision=precision)
  except SpecError:  # over this run's budget: the run's own layout instead
    return None
