"""The SAE stage on the command line: reuse its cached result or train it, save it (or
rescue it), through the toy grid's launch path (`launch.run_stage`): the same checks
before training, devices, memory budget, checkpoints and resume, agreement between
processes, rescue of an unwritable result and report of divergence.

    res = launch.train_or_load("sae_recovery-n10", toy_spec, args)
    saes = train_or_load("sae_recovery-n10-sae", res, SAESpec(...), args)
"""

from __future__ import annotations

import argparse

from superpos_jax import launch, results
from superpos_jax.sae import grid as sae_grid
from superpos_jax.sae import results as sae_results
from superpos_jax.sae.spec import SAEGrid, SAESpec


def train_or_load(name: str, result: results.SweepResult, spec: SAESpec,
                  args: argparse.Namespace) -> sae_results.SAEResult:
  """Reuses the cached SAE stage of `result` in `--out` (unless --force), else trains and
  saves it: `<out>/<name>-<backend>-<digest>.npz`, the digest of `SAEGrid.identity`
  (the SAE spec, the toy result's identity and matmul precision, the SAE engine's code,
  the data family's code, library versions, JAX settings), `-<precision>` before `.npz`
  for matmul precisions other than float32. The layout is the device kind's (or the one
  its checkpoints were written with), not `--chunk-size`, which lays out the toy grid."""
  grid = SAEGrid.of(result, spec)  # a result the stage cannot read fails here, first

  def train(plan, checkpoints, every, progress):
    return sae_grid.run(result, spec, plan=plan, progress=progress,
                        checkpoint_dir=checkpoints, checkpoint_every=every)

  K, L, R = spec.grid_shape
  what = (f"{grid.num_models:,} SAEs ({grid.toys} toy models x {K} sizes x {L} L1 x {R} "
          f"seeds) x {spec.steps:,} steps")
  return launch.run_stage(name, launch.Stage(
      grid, train, sae_results.save, sae_results.load, sae_results.summary, what,
      models="SAEs", hint="try a lower SAE learning rate"), args)
