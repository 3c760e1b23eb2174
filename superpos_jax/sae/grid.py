"""The SAE stage: an SAE grid on every toy model of a result, trained by the toy grid's
engine.

    res = sweep.run(SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2)))
    sae_res = run(res, SAESpec(dict_multiples=(1, 2), l1s=(0.03, 0.1), sae_seeds=(0, 1, 2)))
    sae_res.sel(activation="relu", density=0.1)["max_cosine"]   # [I, L, WD, AL, S, K, Λ, R, n]

Every toy model of `res` (any grid; the bottleneck family, where `h = W x`) gets the
whole SAE grid: dictionary multiple × L1 coefficient × SAE seed. The grid is an
`SAEGrid` (`sae/spec.py`), laid out by the toy grid's plan (`plan.make_plan`: its points
are the toy models, one group per dictionary multiple, since those have different
shapes) and trained by the same program skeleton (`program.py`, this module's `SAE`
kind): `shard_map` over devices, the scan over log windows and blocks of steps
(`train.scan_steps`) outside, `lax.map` over chunks of toy models inside; a chunk draws
its toy models' data once per step and every dictionary size's SAEs of it train on it,
the one-SAE pieces of `sae/train.py` vmapped over the SAE grid (L1 × seed, sharing the
toy model's batch `h`) and the chunk. So the stage gets what the toy grid has: the
memory budget, staged training with checkpoints and resume (`sweep.train`), several
hosts, the matmul precision; and `sae/stage.py` the cache, launch path and rescue.

Keys are functions of coordinate values (`train.data_key`: toy seed and density;
`train.init_key`: SAE seed and dictionary size), so an SAE trains to the same numbers
alone (`make_train(...).train`) or inside any grid, and every SAE of a toy model, and
toy models of every activation at the same (seed, density), read the same data.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import program, provenance, results, sweep
from superpos_jax.environment import environment
from superpos_jax.plan import Plan
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import train as sae
from superpos_jax.sae.results import SAEResult
from superpos_jax.sae.spec import SAEGrid, SAESpec, toy_models  # noqa: F401 (toy_models: API)
from superpos_jax.train import draw_uniforms, scan_steps


def _trainers(plan: Plan) -> list:
  """One SAE's training per dictionary multiple (a group of the plan)."""
  grid = plan.spec
  return [sae.make_train(grid.sae, grid.n, grid.m, mult * grid.n, family=grid.toy.data)
          for mult in grid.sae.dict_multiples]


def _inputs(grid: SAEGrid) -> tuple[jax.Array, ...]:
  """The program's arguments: toy models `W [P, m, n]`, densities and seeds `[P]`, L1
  coefficients `[Λ]`, SAE seeds `[R]`."""
  return (jnp.asarray(grid.W), jnp.asarray(grid.density), jnp.asarray(grid.seed),
          jnp.asarray(grid.sae.l1s, jnp.float32), jnp.asarray(grid.sae.sae_seeds, jnp.uint32))


def _chunked(plan: Plan, W, dens, seeds, l1s, sae_seeds) -> tuple:
  """`((chunk ids, W, densities, data keys), (l1s, SAE seeds))`: the toy models in the
  plan's chunk slots `[chunks, C, ...]` (pads repeat a toy model), and the SAE grid's
  swept values (on every device)."""
  index = plan.chunk_index()
  dkeys = jax.vmap(sae.data_key)(seeds, dens)
  return (jnp.arange(plan.n_chunks), W[index], dens[index], dkeys[index]), (l1s, sae_seeds)


def _init(plan: Plan, sharded, replicated) -> list:
  """Every dictionary multiple's SAE states `[chunks, C, Q, ...]` (Q = Λ·R, L1 major):
  an SAE's start depends on its seed and dictionary size only."""
  grid, (_, sae_seeds) = plan.spec, replicated
  chunks, C = sharded[1].shape[:2]
  states = []
  for mult, trainer in zip(grid.sae.dict_multiples, _trainers(plan)):
    k = mult * grid.n
    init_q = jnp.tile(jax.vmap(lambda s: sae.init_key(s, k))(sae_seeds), len(grid.sae.l1s))
    one = jax.vmap(trainer.init)(init_q)
    states.append(jax.tree.map(lambda x: jnp.broadcast_to(x, (chunks, C) + x.shape), one))
  return states


def _steps(plan: Plan, states, sharded, replicated, windows=None, last=True):
  """Trains one device's chunks, one block of steps at a time, for the log windows
  `windows` (`train.scan_steps`; None: all): per chunk, the toy models' batches `h`
  `[g, C, m, B]` (drawn once), then every dictionary multiple's `[C, Q]` SAEs on them.
  Returns `(states, history [T, K, chunks, C, Q])`."""
  grid, (ids, W, dens, dkeys), (l1s, _) = plan.spec, sharded, replicated
  n, B, family = grid.n, grid.batch_size, grid.toy.data
  l1_q = jnp.repeat(l1s, len(grid.sae.sae_seeds))  # [Q]
  steps = [jax.vmap(jax.vmap(t.step, (0, None, 0)), (0, 0, None)) for t in _trainers(plan)]

  def advance(states, ts):
    def run(chunk):
      st, W_c, d_c, keys_c = chunk
      u = jax.vmap(draw_uniforms, (0, None, None, None))(keys_c, ts, n, B)  # [C, g, n, B]
      hs = jax.vmap(jax.vmap(sae.hidden, (None, 0, None, None)), (0, 0, 0, None))(
          W_c, u, d_c, family)  # [C, g, m, B]
      hs = jnp.moveaxis(hs, 1, 0)
      out = [jax.lax.scan(lambda s, h, step=step: step(s, h, l1_q), s0, hs)
             for step, s0 in zip(steps, st)]
      return [s for s, _ in out], jnp.stack([loss for _, loss in out])  # [K, g, C, Q]

    states, losses = jax.lax.map(run, (states, W, dens, dkeys))  # [chunks, K, g, C, Q]
    return states, jnp.transpose(losses, (2, 1, 0, 3, 4))

  return scan_steps(grid, advance, states, step_bytes=plan.step_draw_bytes,
                    block_bytes=plan.block_bytes, on_window=program.on_window(plan, ids),
                    windows=windows, last=last)


def _finish(plan: Plan, states, history, sharded, replicated) -> list:
  """Per dictionary multiple, `(params, history [chunks, C, Q, T], SAEMetrics)`, the
  metrics toy model by toy model (its evaluation codes are `[Q, k, E]`)."""
  grid, (_, W, dens, _), (l1s, _) = plan.spec, sharded, replicated
  l1_q = jnp.repeat(l1s, len(grid.sae.sae_seeds))
  grid_metrics = jax.vmap(sae.metrics, (0, None, None, 0))  # [Q] SAEs of one toy model
  history = jnp.moveaxis(history, 0, -1)  # [K, chunks, C, Q, T]
  out = []
  for g, (trainer, st) in enumerate(zip(_trainers(plan), states)):
    per_toy = lambda x, t=trainer: grid_metrics(x[0], t.eval_features(x[2]), x[1], l1_q)
    mets = jax.lax.map(lambda c: jax.lax.map(per_toy, c), (st.params, W, dens))
    out.append((st.params, history[g], mets))
  return out


def _to_grid(plan: Plan, outs) -> dict[str, jax.Array]:
  """The chunk slots' outputs as `sae.results.SCHEMA` arrays `[P, K, Λ, R, ...]` (pads
  dropped; latent axes padded with NaN to the largest dictionary)."""
  grid = plan.spec
  P, (K, L, R) = grid.toys, grid.sae.grid_shape
  k_max, first = max(grid.sae.dict_multiples) * grid.n, plan.first_slots()
  toy = lambda x: x.reshape((-1,) + x.shape[2:])[first].reshape((P, L, R) + x.shape[3:])
  pad = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, k_max - x.shape[-1])],
                          constant_values=jnp.nan)
  groups = {name: [] for name in sae_results.SCHEMA}
  for params, history, mets in outs:
    decoder, hist = toy(params.W_d), toy(history)
    groups["decoder"].append(pad(decoder))
    groups["loss_history"].append(hist)
    groups["frequency"].append(pad(toy(mets.frequency)))
    coact = jnp.moveaxis(toy(mets.coactivation), -1, -2)  # [P, Λ, R, n, k]: latents last
    groups["coactivation"].append(jnp.moveaxis(pad(coact), -1, -2))
    for name in ("eval_loss", "reconstruction_error", "l0", "max_cosine", "feature_frequency",
                 "mse", "hidden_variance"):
      groups[name].append(toy(getattr(mets, name)))
    groups["diverged"].append(~(jnp.all(jnp.isfinite(decoder), axis=(-2, -1))
                                & jnp.all(jnp.isfinite(hist), axis=-1)))
  out = {name: jnp.stack(v, axis=1) for name, v in groups.items()}  # [P, K, Λ, R, ...]
  for name in ("eval_loss", "reconstruction_error", "l0", "mse"):
    out[name] = jnp.where(out["diverged"], jnp.nan, out[name])
  return out


SAE = program.Kind(_inputs, _chunked, _init, _steps, _finish, _to_grid,
                   jax.sharding.PartitionSpec("grid"),
                   lambda grid: (len(grid.sae.l1s) * len(grid.sae.sae_seeds),))
program.register_kind(SAEGrid, SAE)


def run(result: results.SweepResult, spec: SAESpec, *, progress: bool | None = None,
        chunk_size: int | None = None, max_memory: int | None = None,
        devices: Sequence[jax.Device] | None = None, matmul_precision: str = "float32",
        plan: Plan | None = None, checkpoint_dir: str | None = None,
        checkpoint_every: float = 300.0) -> SAEResult:
  """Trains `spec`'s SAE grid on every toy model of `result`, as `sweep.run` trains a toy
  grid: one compiled call, or stages with checkpoints in `checkpoint_dir` (a rerun
  resumes from the latest; the folder stays: `checkpoint.remove` it once saved).

  Args:
    result: a trained toy grid of the bottleneck model (any axes).
    spec: the SAE grid and settings.
    progress: print progress to stderr; None = only when stderr is a terminal.
    chunk_size: toy models per chunk (each with its whole SAE grid); None = the device
      kind's rule (`plan.choose_chunk_size`) within `max_memory`. Results do not depend
      on it beyond float rounding.
    max_memory: byte budget (`plan.estimate_memory`); None = no limit.
    devices: devices to shard the chunks over; None = the default backend's
      (`plan.choose_devices`).
    matmul_precision: one of `plan.PRECISIONS` ("float32": exact float32).
    plan: a layout made beforehand for `SAEGrid.of(result, spec)` (`plan.make_plan`);
      then the layout arguments above must be left unset.
    checkpoint_dir, checkpoint_every: as `sweep.run`'s.

  Returns:
    An `SAEResult` with axes `result.axes + SAE_AXES`.
  """
  grid = SAEGrid.of(result, spec)
  identity = grid.identity()  # as it is when training starts
  done = sweep.train(grid, progress=progress, plan=plan, checkpoint_dir=checkpoint_dir,
                     checkpoint_every=checkpoint_every, chunk_size=chunk_size,
                     max_memory=max_memory, devices=devices, matmul_precision=matmul_precision)
  return _wrap(done, result, identity)


def _wrap(done: sweep.Trained, result: results.SweepResult, identity: dict) -> SAEResult:
  """The arrays as an `SAEResult` that explains itself: both specs, the identity, the
  environment, the layout and the timings."""
  plan, grid = done.plan, done.plan.spec
  spec = grid.sae
  data = {k: v.reshape(grid.toy_shape + spec.grid_shape + v.shape[4:])
          for k, v in done.arrays.items()}
  coords = {a: np.asarray(result.coords[a]) for a in result.axes}
  coords.update({"dict_multiple": np.asarray(spec.dict_multiples, np.int64),
                 "l1": np.asarray(spec.l1s, np.float64),
                 "sae_seed": np.asarray(spec.sae_seeds, np.int64)})
  toy = {"toy_W": np.asarray(result["W"]), "toy_eval_loss": np.asarray(result["eval_loss"]),
         "toy_diverged": np.asarray(result["diverged"])}
  meta = {"sae_spec": spec.to_dict(), "toy_spec": grid.toy.to_dict(),
          "toy_digest": grid.toy_digest, "toy_precision": grid.toy_precision,
          "spec_digest": provenance.digest(identity), "identity": identity,
          "env": environment(plan.devices),
          "engine": plan.describe() | ({"staged": done.staged} if done.staged else {}),
          "timings": {"compile_s": done.compile_s, "run_s": done.run_s,
                      "sae_steps_per_s": grid.num_models * spec.steps / done.run_s}}
  return SAEResult(coords=coords, data=data, toy=toy,
                   extra={"history_steps": grid.history_steps()}, meta=meta)
