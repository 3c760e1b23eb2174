"""Timings that mean what they say: compile, first execution and warm, steady-state runs,
each measured and reported apart, the same protocol for every row.

    probe = warm.probe(layout, steps=200)                  # compile + two short runs
    steps = warm.fit_steps(probe, want=2000, runs=4, left_s=40, min_run_s=1.0)
    programs = {"default": warm.compile_layout(warm.with_steps(layout, steps))}
    rows = warm.first_runs(programs)                       # compile_s, first_run_s, copy_s, memory
    warm.timed_runs(programs, rows, repeats=3, deadline=t)  # interleaved warm runs, median

A row's model-steps/s comes from the median of its warm executions of the compiled
program (`block_until_ready`, outputs left on the device; the best one is kept too),
never from a first execution (which includes one-off costs: autotuning, allocation,
kernel loading) nor from the copy back to the host (timed once, apart). Rows of one
workload are timed interleaved (row A, row B, row A, ...), so a change of machine load
hits all of them alike; the median, not the best, because on a busy machine the best of
a few runs is luck (two compiles of one layout, 7 interleaved runs of ~0.09 s each, five
trials on the 2-core CPU at load average 11-13: best-run ratios 0.96-1.43, median ratios
0.89-1.03). `fit_steps` scales a
workload's steps so that one execution lasts at least `min_run_s` (fixed per-call costs
then weigh little) and the whole fits the time left.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import time

import jax
import numpy as np

from superpos_jax import sweep
from superpos_jax.plan import Plan

_DOT_PRECISION = re.compile(r"stablehlo\.dot_general.*?precision = \[(\w+), \w+\]")


@dataclasses.dataclass
class Program:
  """A layout's compiled program, with what compiling it measured."""

  layout: Plan
  compiled: object
  compile_s: float
  dots: dict  # precision (as lowered, e.g. "HIGHEST") -> number of dot_general ops
  inputs: tuple = ()


def with_steps(layout: Plan, steps: int) -> Plan:
  """`layout` for `steps` training steps (same grid; log window at most `steps`)."""
  spec = dataclasses.replace(layout.spec, steps=int(steps),
                             log_every=min(layout.spec.log_every, int(steps)))
  return dataclasses.replace(layout, spec=spec, progress=False)


def compile_layout(layout: Plan) -> Program:
  """Lowers and compiles `layout`'s program (`sweep.lower_plan`: at its precision) and
  counts its matrix products by the precision they were lowered at."""
  t0 = time.perf_counter()
  lowered = sweep.lower_plan(layout)
  t_text = time.perf_counter()
  text = lowered.as_text()
  t_text = time.perf_counter() - t_text
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0 - t_text
  dots = dict(collections.Counter(_DOT_PRECISION.findall(text)))
  return Program(layout, compiled, compile_s, dots, sweep.program_inputs(layout.spec))


def execute(program: Program, keep: bool = False):
  """Seconds of one execution of `program`, to `block_until_ready`; with `keep`, also its
  outputs (still on the device)."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(program.compiled(*program.inputs))
  seconds = time.perf_counter() - t0
  return (seconds, out) if keep else seconds


def model_steps(layout: Plan) -> int:
  return layout.spec.num_models * layout.spec.steps


@dataclasses.dataclass
class Probe:
  """A short version of a layout, compiled and run twice (first, then warm)."""

  program: Program
  first_s: float
  warm_s: float
  peak_before_mb: float | None = None  # the device's peak before its first run

  @property
  def steps(self) -> int:
    return self.program.layout.spec.steps

  @property
  def step_s(self) -> float:
    """Seconds per training step of the whole grid, an upper bound (fixed costs included)."""
    return self.warm_s / self.steps

  def describe(self) -> dict:
    return {"steps": self.steps, "compile_s": round(self.program.compile_s, 3),
            "first_run_s": round(self.first_s, 4), "warm_run_s": round(self.warm_s, 4),
            "model_steps_per_s": round(model_steps(self.program.layout) / self.warm_s)}


def probe(layout: Plan, steps: int) -> Probe:
  """Compiles `layout` at `steps` steps and runs it twice."""
  program = compile_layout(with_steps(layout, steps))
  before = device_peak_mb(layout.devices)
  first = execute(program)
  return Probe(program, first, execute(program), before)


def fit_steps(probe_: Probe, *, want: int, runs: int, left_s: float, min_run_s: float,
              grow: bool = True, compiles: int = 1) -> int:
  """Steps to time, a whole number of the probe's log windows.

  With `grow`: `want`, raised until one execution lasts `min_run_s`, but no further than
  `compiles` compiles and `runs` executions fit in `left_s` seconds (never below `want`:
  fewer steps would save little where compiles take the time). Without: `want`, lowered
  until they fit (the rest is projected), at least one window. The per-step time is the
  probe's (fixed costs included, so an overestimate).
  """
  step_s = max(probe_.step_s, 1e-12)
  window = probe_.program.layout.spec.log_every
  room = max(int((left_s - compiles * probe_.program.compile_s) / (runs * step_s)), 1)
  if grow:
    steps = max(want, min(math.ceil(min_run_s / step_s), room))
  else:
    steps = min(want, room)
  return max(window, steps // window * window)


def memory_row(program: Program) -> dict:
  """XLA's own memory accounting of the compiled program (per device), in MB."""
  try:
    m = program.compiled.memory_analysis()
  except Exception:  # noqa: BLE001 (not every backend and version implements it)
    return {"xla_peak_mb": None}
  peak = getattr(m, "peak_memory_in_bytes", 0) or (
      m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
      + m.temp_size_in_bytes)
  return {"xla_peak_mb": round(peak / 2**20, 1), "xla_temp_mb": round(m.temp_size_in_bytes / 2**20, 1)}


def device_peak_mb(devices) -> float | None:
  """Largest `peak_bytes_in_use` over `devices` (this process so far), in MB; None where
  the backend reports none (CPU)."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001 (backends differ in what they raise)
      stats = {}
    if "peak_bytes_in_use" in stats:
      peaks.append(stats["peak_bytes_in_use"] / 2**20)
  return round(max(peaks), 1) if peaks else None


def _warm(row: dict, layout: Plan, seconds: float) -> None:
  """Adds a warm run of `seconds` to `row` and updates its median and best."""
  row["warm_runs_s"].append(round(seconds, 5))
  row["run_s"] = float(np.median(row["warm_runs_s"]))
  row["best_run_s"] = min(row["warm_runs_s"])
  row["model_steps_per_s"] = round(model_steps(layout) / row["run_s"])
  row["best_model_steps_per_s"] = round(model_steps(layout) / row["best_run_s"])


def first_run(program: Program, *, probe: Probe | None = None, reused: bool = False) -> dict:
  """The row of `program`: layout, precision, compile, first execution, copy back to the
  host, device memory; its warm runs come from `timed_runs`.

  Args:
    program: the compiled program.
    probe: the probe that compiled and ran it: its first run is the row's, its warm run
      and the execution made here are the row's first warm runs.
    reused: another row's program, already run: no first run of its own (None), the
      execution made here is a warm one.
  """
  layout = program.layout
  before = probe.peak_before_mb if probe else device_peak_mb(layout.devices)
  seconds, out = execute(program, keep=True)
  after = device_peak_mb(layout.devices)
  t0 = time.perf_counter()
  jax.device_get(out)
  copy_s = time.perf_counter() - t0
  del out
  describe = layout.describe()
  describe.pop("autotune", None)
  first = probe.first_s if probe else None if reused else seconds
  row = {"layout": describe, "precision": layout.precision, "dot_precisions": program.dots,
         "models": layout.spec.num_models, "steps": layout.spec.steps,
         "compile_s": None if reused else round(program.compile_s, 3),
         "first_run_s": None if first is None else round(first, 4), "copy_s": round(copy_s, 4),
         # The process's peak so far: this run's own where it rose during this run.
         "peak_device_mb": after, "peak_rose": None if after is None else after > (before or 0),
         **memory_row(program), "warm_runs_s": [], "run_s": None, "model_steps_per_s": None,
         "best_run_s": None, "best_model_steps_per_s": None, "reused": reused}
  for warm_s in ([probe.warm_s] if probe else []) + ([seconds] if probe or reused else []):
    _warm(row, layout, warm_s)
  return row


def timed_runs(programs: dict[str, Program], rows: dict[str, dict], *, repeats: int,
               deadline: float, on_round=lambda rows: None) -> None:
  """Warm executions of every program in turn, `repeats` rounds (fewer where the next
  round would pass `deadline`, a `time.time()`); each row keeps its runs, their median
  (run_s, model_steps_per_s) and best (best_run_s, best_model_steps_per_s).
  `on_round(rows)` after every round (to save them)."""
  for _ in range(repeats):
    guess = sum(min(r["warm_runs_s"] or [r["first_run_s"] or 0.0]) for r in rows.values())
    if time.time() + 1.2 * guess > deadline:
      break
    for name, program in programs.items():
      _warm(rows[name], program.layout, execute(program))
    on_round(rows)
