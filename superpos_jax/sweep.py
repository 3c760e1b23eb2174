"""A sweep: plan the grid's layout once, compile its program, train it (in one call, or
in stages with checkpoints), and wrap the arrays as a result.

    spec = SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))
    result = run(spec)                      # results.SweepResult
    result.sel(activation="relu", density=0.1)["W"]   # [I, L, WD, AL, S, m, n]

The program itself (point keys, chunks, devices) is `program.py`; the layout `plan.py`
(or `autotune.py`); training in stages with checkpoints `staged.py`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import NamedTuple, Sequence

import jax
import numpy as np

from superpos_jax import provenance, results
from superpos_jax import plan as plans
from superpos_jax.environment import environment
from superpos_jax.gridspec import GridSpec
from superpos_jax.plan import Plan, choose_devices, make_plan
from superpos_jax.program import (POINT_AXES, compile_plan, lower_plan, point_keys,  # noqa: F401
                                  program_inputs, progress_ticks, stage_programs)
from superpos_jax.progress import Progress, showing
from superpos_jax.spec import SpecError, SweepSpec, check_spec
from superpos_jax.staged import check_checkpoint_every, resume_layout, run_staged
from superpos_jax.train import check_families


def layout_for(spec: SweepSpec, *, chunk_size: int | str | None = None,
               max_memory: int | None = None, devices: Sequence[jax.Device] | None = None,
               span_seeds: bool | None = None, matmul_precision: str = "float32",
               progress: bool = False) -> Plan:
  """The plan `run` trains `spec` with: chosen for the device kind (`plan.make_plan`),
  measured (`chunk_size="auto"`, `autotune.autotune`), or as given."""
  if devices is None:  # the spec is checked first: choose_devices reads it
    devices = choose_devices(plans.check_grid(spec), jax.devices())
  if chunk_size == "auto":
    if not isinstance(spec, SweepSpec):
      raise SpecError("chunk_size='auto' times toy grids only: give a chunk size or None")
    from superpos_jax import autotune  # it times programs of this module
    return autotune.autotune(spec, devices, max_memory=max_memory, progress=progress,
                             precision=matmul_precision)
  return make_plan(spec, devices=devices, chunk_size=chunk_size, max_memory=max_memory,
                   progress=progress, span_seeds=span_seeds, precision=matmul_precision)


def run(spec: SweepSpec, *, progress: bool | None = None, chunk_size: int | str | None = None,
        max_memory: int | None = None,
        devices: Sequence[jax.Device] | None = None,
        span_seeds: bool | None = None, matmul_precision: str = "float32",
        plan: Plan | None = None, checkpoint_dir: str | None = None,
        checkpoint_every: float = 300.0) -> results.SweepResult:
  """Trains every model of `spec` in one compiled call and returns its results.

  With `checkpoint_dir`, the same training runs in stages of a few log windows (one
  compiled program per stage kind, `stage_programs`), and the whole grid's state is
  checkpointed there (orbax) at most every `checkpoint_every` seconds of wall time; a
  rerun with the same spec, engine code and layout resumes from the latest checkpoint
  and ends with the same arrays, byte for byte. The checkpoint stays after the run
  (holding the finished state, so a rerun only evaluates): remove it with
  `checkpoint.remove(checkpoint_dir)` once the result is saved.

  Args:
    spec: the grid and settings.
    progress: print progress to stderr; None = only when stderr is a terminal.
    chunk_size: models trained together per scan; None = the device kind's rule
      (`plan.choose_chunk_size`), small enough for `max_memory`; "auto" = the fastest of
      a few layouts timed on the devices at hand (`autotune.autotune`, remembered).
      Results do not depend on it beyond float rounding.
    max_memory: byte budget for the run (see `plan.estimate_memory`); None = no limit.
    devices: devices to shard the grid over; None = the default backend's, as
      `plan.choose_devices` picks them (one host CPU device for large models).
    span_seeds: cut chunks across seeds (see `plan.make_plan`); None = the device kind's
      rule. Results do not depend on it beyond float rounding.
    matmul_precision: one of `plan.PRECISIONS`; "float32" (default) is exact float32 on
      every backend, the others trade accuracy for speed on accelerators.
    plan: a layout made beforehand (`layout_for`, `plan.make_plan`, `autotune.autotune`)
      for this `spec`; then the layout arguments above must be left unset.
    checkpoint_dir: a folder for checkpoints (None: none, one call).
    checkpoint_every: seconds of wall time between checkpoints at most (0: after every
      stage); a run shorter than that writes only its final one.
  """
  check_families(check_spec(spec))  # a bad family fails here, before any compilation
  identity = spec.identity()  # what decides the numbers, as they are when training starts
  done = train(spec, progress=progress, plan=plan, checkpoint_dir=checkpoint_dir,
               checkpoint_every=checkpoint_every, chunk_size=chunk_size,
               max_memory=max_memory, devices=devices, span_seeds=span_seeds,
               matmul_precision=matmul_precision)
  return _wrap(done, identity)


class Trained(NamedTuple):
  """A grid's training, done (`train`): its plan, its result arrays (numpy, whole on
  every process), and what it took."""

  plan: Plan
  arrays: dict[str, np.ndarray]
  compile_s: float
  run_s: float
  staged: dict | None  # what the staging did (None: one call)


def train(spec: GridSpec, *, progress: bool | None = None, plan: Plan | None = None,
          checkpoint_dir: str | None = None, checkpoint_every: float = 300.0,
          **layout) -> Trained:
  """Plans (once), compiles and trains any grid (`gridspec.GridSpec`: the toy grid, the
  SAE grid), in one call or in stages with checkpoints, and gathers its arrays on every
  process. `run`'s arguments; `layout`: its chunk_size, max_memory, devices, span_seeds
  and matmul_precision."""
  if progress is None:
    progress = sys.stderr.isatty()
  if checkpoint_dir is not None:
    checkpoint_every = check_checkpoint_every(checkpoint_every)
    if not isinstance(checkpoint_dir, (str, os.PathLike)) or not os.fspath(checkpoint_dir):
      raise SpecError(f"checkpoint_dir must name a folder, got {checkpoint_dir!r}")
    checkpoint_dir = os.fspath(checkpoint_dir)
  layout = dict(dict(chunk_size=None, max_memory=None, devices=None, span_seeds=None,
                     matmul_precision="float32"), **layout)
  plan = _plan(spec, plan, progress, checkpoint_dir, **layout)
  if checkpoint_dir is None:
    out, compile_s, run_s, staged = _run_one_call(plan) + (None,)
  else:
    out, compile_s, run_s, staged = run_staged(plan, checkpoint_dir, checkpoint_every)
  t0 = time.perf_counter()
  out = _on_every_host(plan, out)
  return Trained(plan, out, compile_s, run_s + time.perf_counter() - t0, staged)


def _plan(spec: GridSpec, plan: Plan | None, progress: bool, checkpoint_dir: str | None,
          **layout) -> Plan:
  """The layout `run` trains with: the one a checkpoint of this run was written with
  (where no layout is asked for and it can run here), the one asked for, or the given
  plan (whose spec must be `spec`, with no layout argument beside it)."""
  chunk_size, span_seeds = layout["chunk_size"], layout["span_seeds"]
  if plan is not None:
    given = [k for k, v in layout.items() if k != "matmul_precision" and v is not None]
    if given or layout["matmul_precision"] != "float32":
      raise SpecError(f"run(plan=...) takes the layout from the plan: leave "
                      f"{', '.join(given) or 'matmul_precision'} unset")
    if not isinstance(plan, Plan) or plan.spec != spec:
      raise SpecError("run(plan=...) needs a Plan made for this spec")
    return dataclasses.replace(plan, progress=bool(progress))
  if checkpoint_dir is not None and chunk_size in (None, "auto") and span_seeds is None:
    devices = layout["devices"]
    resumed = resume_layout(
        spec, checkpoint_dir,
        plans.check_devices(devices) if devices is not None else choose_devices(spec, jax.devices()),
        max_memory=plans.check_memory_budget(layout["max_memory"]),
        precision=plans.check_precision(layout["matmul_precision"]), progress=progress)
    if resumed is not None:
      return resumed
  return layout_for(spec, progress=progress, **layout)


def _run_one_call(plan: Plan) -> tuple:
  """`plan`'s whole training in one compiled call: `(arrays on device, compile s, run s)`."""
  spec = plan.spec
  compiled, compile_s = compile_plan(plan)
  display = Progress(progress_ticks(plan), spec.num_models * spec.steps) if plan.progress else None
  with showing(display):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*program_inputs(spec)))
    return out, compile_s, time.perf_counter() - t0


def _on_every_host(plan: Plan, out) -> dict[str, np.ndarray]:
  """The result arrays as numpy, whole on every process (gathered on several hosts)."""
  if len({d.process_index for d in plan.devices}) > 1:
    from jax.experimental import multihost_utils
    out = multihost_utils.process_allgather(out, tiled=True)
  return jax.tree.map(np.asarray, out)


def _wrap(done: Trained, identity: dict) -> results.SweepResult:
  """The arrays as a result that explains itself: spec, definitions, identity,
  environment, layout, timings."""
  plan, spec, run_s = done.plan, done.plan.spec, done.run_s
  meta = {
      "spec": spec.to_dict(),
      "families": provenance.describe(spec),
      "spec_digest": provenance.digest(identity),
      "identity": identity,
      "env": environment(plan.devices),
      "engine": plan.describe() | ({"staged": done.staged} if done.staged else {}),
      "timings": {"compile_s": done.compile_s, "run_s": run_s,
                  "model_steps_per_s": spec.num_models * spec.steps / run_s},
  }
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  return results.SweepResult(coords=spec.coords(), data=done.arrays, extra=extra, meta=meta)
