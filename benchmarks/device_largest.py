"""The device check's optional sections: the project's largest workloads, timed for the
time that is left and projected to their whole length.

  scaling_law  the scaling-law experiment's full grid, one spec per hidden width
               (experiments/scaling_law.py: `build_specs(preset)`); skipped where that
               module is absent;
  tms_n2       the n=2 phase diagram at the resolution of TMS section 3: relu, 256 x 256
               (density, relative importance) points x 16 seeds, 10,000 steps, 1.05e10
               model-steps (minutes even at 10^7 model-steps/s: timed on part of its
               steps, the rest projected).
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from device_sections import Skip, log, probe_steps, timed_grid, whole_grid

SCALING_LAW = "scaling_law"  # experiments/scaling_law.py (issue 29)
TMS_GRID, TMS_SEEDS, TMS_STEPS = 256, 16, 10_000


def tms_spec(quick: bool):
  """The TMS section-3 n=2 phase diagram (tiny with `quick`), from the paper preset's axes."""
  import phase_diagram
  from superpos_jax.spec import SweepSpec
  points, seeds, steps = (6, 2, 200) if quick else (TMS_GRID, TMS_SEEDS, TMS_STEPS)
  return SweepSpec(**dict(phase_diagram.PRESETS["paper"], activations=("relu",),
                          densities=tuple(np.geomspace(0.01, 1.0, points)),
                          importances=tuple(np.geomspace(0.1, 10.0, points)),
                          seeds=tuple(range(seeds)), steps=steps))


def time_grids(ctx, part, specs: dict) -> None:
  """Each spec timed with the time left shared among the ones still to run; saved as
  part["grids"][label] after each."""
  grids = {}
  for i, (label, spec) in enumerate(specs.items()):
    share = ctx.left() / (len(specs) - i)
    if share < 5.0:
      grids[label] = {"models": spec.num_models, "steps_full": spec.steps,
                      "skipped": f"{share:.0f} s left for it"}
      part.put("grids", grids)
      continue
    sub = dataclasses.replace(ctx, deadline=ctx.deadline - ctx.left() + share)
    row = timed_grid(sub, part, f"grid_{i}", spec, probe=True, runs=1 + ctx.repeats,
                     label=label)
    full = whole_grid(row, spec)
    grids[label] = {"models": spec.num_models, "steps_full": spec.steps,
                    "model_steps_full": spec.num_models * spec.steps, "row": row,
                    "projected_full_s": full["wall_s"], "how": full["how"]}
    part.put("grids", grids)


def tms_n2(ctx, part) -> None:
  spec = tms_spec(ctx.quick)
  log(f"tms_n2: {spec.num_models:,} models x {spec.steps:,} steps "
      f"({spec.num_models * spec.steps:.3g} model-steps); probe {probe_steps(spec)} steps")
  time_grids(ctx, part, {"tms_n2": spec})


def scaling_law(ctx, part, module_name: str = SCALING_LAW) -> None:
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:
      raise
    raise Skip(f"experiments/{module_name}.py not present") from None
  preset = "quick" if ctx.quick else "full"
  specs = module.build_specs(preset)
  labels = [f"n{s.n}_m{s.m}" for s in specs]
  if len(set(labels)) < len(labels):
    labels = [f"{label}_{i}" for i, label in enumerate(labels)]
  part.put("preset", preset)
  time_grids(ctx, part, dict(zip(labels, specs)))
