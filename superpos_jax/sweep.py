"""The grid: the one-model trainer (`train.py`) turned into ONE compiled XLA program.

    spec = SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))
    result = run(spec)                      # results.SweepResult
    result.sel(activation="relu", density=0.1)["W"]   # [I, L, S, m, n]

The grid is activation × density × importance × lr × weight decay × init scale × seed
(`spec.AXES`); the model family, data family and init family are static. Inside the program the points
are grouped by activation (a `lax.switch` over activations under `vmap` would evaluate
every branch at every point); each activation's points are cut into chunks (`plan.py`),
a chunk is `vmap(train)`, `lax.map` runs the chunks one after another, and `shard_map`
spreads them over the devices. The results are scattered back to the grid.

Random numbers are *common* by default: a model's init and data depend only on its seed,
and each model thins the shared uniforms with its own density (`data.thin`). Every model
still sees an exact i.i.d. stream of its own distribution; models that share a seed see
correlated streams, which makes neighbouring grid points directly comparable and divides
the random numbers drawn per step by the number of points per seed. `rng="per_point"`
gives every point its own stream, derived from its seed, density and importance (every
lr, weight decay and init scale of a point shares its start: `point_keys`). Either way a
point's key is a function of its coordinate *values*, so it trains to the same numbers
alone or inside any grid.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import activations, metrics, results
from superpos_jax.environment import environment
from superpos_jax.plan import Plan, choose_devices, make_plan
from superpos_jax.progress import Progress, report, showing
from superpos_jax.spec import SweepSpec, check_spec
from superpos_jax.train import TrainOutput, draw_uniforms, make_train, scan_steps


def _float_bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)


# Point axes within an activation, in program order; the result's order is `spec.AXES`.
POINT_AXES = ("seed", "density", "importance", "lr", "weight_decay", "init_scale")
# The axes of how a point is optimised (not of the problem it solves): every value of
# them shares the point's start (see `point_keys`).
SHARED_START_AXES = ("lr", "weight_decay", "init_scale")
# The lr whose bits every key is folded with: keys were once folded with each point's own
# lr, so folding this one for every lr keeps each lr = 1e-3 key (every preset's) as it was.
_KEY_LR = 1e-3


def _point_grid(spec: SweepSpec) -> tuple[int, ...]:
  """`(S, D, I, L, WD, AL)`: the point grid of one activation, in `POINT_AXES` order."""
  A, D, I, L, WD, AL, S = spec.grid_shape
  return (S, D, I, L, WD, AL)


def _flat_points(x: jax.Array, axis: int, grid: tuple[int, ...]) -> jax.Array:
  """`x`, the values of point axis `axis` of `grid` (`_point_grid`; `x` may have trailing
  dims), repeated for every point in `POINT_AXES` order: `[prod(grid), ...]`."""
  lead = [1] * len(grid)
  lead[axis] = x.shape[0]
  x = x.reshape(tuple(lead) + x.shape[1:])
  return jnp.broadcast_to(x, grid + x.shape[len(grid):]).reshape((-1,) + x.shape[len(grid):])


def point_keys(spec: SweepSpec, densities, importance_vectors, lrs, seeds,
               weight_decays=None, init_scales=None) -> jax.Array:
  """`[S*Q, 2]` (init key, data key) of every point, in `POINT_AXES` order.

  Each is `fold_in(base, 0)` (init) or `fold_in(base, 1)` (data), where the base is the
  seed's key ("shared") or the seed's key folded with the point's density and importance
  ("per_point"), as `spec.init_rng` and `spec.rng` say. Keys depend on coordinate values,
  not positions, so a point gets the same keys alone or inside any grid.

  The start is a function of the problem, not of how it is optimised: every lr, weight
  decay and init scale (`SHARED_START_AXES`) of a point and seed gets the same keys, so
  `W₀ = α·Z` scales one draw `Z` for every α and comparisons along those axes are
  paired. (The init key once folded in α and λ where they differed from 1 and 0.01, and
  each point's lr; keys of α = 1, λ = 0.01, lr = 1e-3 are unchanged.)

  Args:
    spec: the grid (its shape and rng modes).
    densities, importance_vectors, lrs, seeds: `[D]`, `[I, n]`, `[L]`, `[S]`, as
      `program_inputs` gives them; `lrs` (like `weight_decays [WD]` and
      `init_scales [AL]`, None = the spec's) only set how often each key repeats.
  """
  del lrs, weight_decays, init_scales  # shared starts: their values fold into no key
  shape = _point_grid(spec)
  grid = functools.partial(_flat_points, grid=shape)
  seed_keys = grid(jax.vmap(jax.random.key)(seeds), 0)
  weights = (jnp.arange(spec.n, dtype=jnp.uint32) + 1)[None, :]
  imp_label = jnp.sum(_float_bits(importance_vectors) * weights, axis=-1)
  fold = jax.vmap(jax.random.fold_in)
  lr_bits = jnp.broadcast_to(_float_bits(_KEY_LR), seed_keys.shape)
  coord_keys = fold(fold(fold(seed_keys, _float_bits(grid(densities, 1))), grid(imp_label, 2)),
                    lr_bits)
  base = lambda mode: coord_keys if mode == "per_point" else seed_keys
  count = jnp.zeros(seed_keys.shape[0], jnp.uint32)
  return jnp.stack([fold(base(spec.init_rng), count), fold(base(spec.rng), count + 1)], axis=-1)


def _grid_metrics(spec: SweepSpec, out: TrainOutput) -> dict[str, jax.Array]:
  """Every result array of `results.SCHEMA` from the trained `[A, P, ...]` outputs."""
  per_model = lambda fn: jax.vmap(jax.vmap(fn))
  W, b, history = out.W, out.b, out.loss_history
  arrays = {
      "W": W, "b": b, "loss_history": history, "final_loss": history[..., -1],
      "eval_loss": out.eval_loss,
      "feature_norms": per_model(metrics.feature_norms)(W),
      "superposition": per_model(metrics.superposition)(W),
      "feature_dimensionality": per_model(metrics.feature_dimensionality)(W),
      "dims_per_feature": per_model(metrics.dims_per_feature)(W),
  }
  if out.W2 is not None:  # untied "abs": the tied-weight metrics above are W₁'s
    arrays["W2"] = out.W2
  finite_w = jnp.all(jnp.isfinite(W), axis=(-2, -1)) & jnp.all(jnp.isfinite(b), axis=-1)
  arrays["diverged"] = ~(finite_w & jnp.all(jnp.isfinite(history), axis=-1))
  # A NaN model can still score a finite loss (relu(NaN) may come out as 0): never let it
  # look like a good seed.
  for k in ("eval_loss", "final_loss"):
    arrays[k] = jnp.where(arrays["diverged"], jnp.nan, arrays[k])
  if spec.n == 2:
    arrays["phase"] = per_model(lambda w: metrics.classify_phase(w, spec.thresholds))(W)
  return arrays


def _train_device(plan: Plan, chunk_ids, keys, dens, imp, lr, wd, scale, chunk_seed, seed_keys):
  """Trains one device's chunks of every activation, one block of steps at a time.

  The loop over steps is outside, the `lax.map` over chunks inside it: with shared
  random numbers each block draws one batch of uniforms per seed, which every chunk of
  that seed reads (rather than one draw per chunk and step); where chunks span seeds,
  each model indexes its seed's row of the step's `[S, n, B]` draw inside the vmapped
  step (a per-chunk gathered copy measured no faster). Only the chunks' states, which
  are small, are carried from block to block. `chunk_seed`: `[chunks, C]`.
  """
  spec, shared, span = plan.spec, plan.spec.rng == "shared", plan.span_seeds
  trainers = [make_train(spec, act) for act in map(activations.get, spec.activations)]
  init_keys, data_keys = keys[..., 0], keys[..., 1]  # [chunks, C]
  seed_data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys)  # [S]
  draw = lambda k, ts: draw_uniforms(k, ts, spec.n, spec.batch_size)  # [g, n, B]

  def chunk_block(trainer, ts, u_seeds):
    step = jax.vmap(trainer.step, in_axes=(0, None if shared else 0, 0, 0, 0, 0))
    # Chunks spanning seeds: each model reads its seed's row of the step's [S, n, B].
    step_seed = jax.vmap(lambda st, s, u_t, *a: trainer.step(st, u_t[s], *a),
                         in_axes=(0, 0, None, 0, 0, 0, 0))

    def run(chunk):
      state, seed, chunk_data_keys, d, i, r, weight_decay = chunk
      if shared and span:  # u_seeds: [g, S, n, B]
        return jax.lax.scan(lambda st, u_t: step_seed(st, seed, u_t, d, i, r, weight_decay),
                            state, u_seeds)
      # [g, n, B] of the chunk's seed, or [g, C, n, B]: one stream per model.
      u = u_seeds[seed[0]] if shared else jnp.moveaxis(jax.vmap(draw, (0, None))(chunk_data_keys, ts), 0, 1)
      return jax.lax.scan(lambda st, u_t: step(st, u_t, d, i, r, weight_decay), state, u)

    return run

  def advance(states, ts):
    u_seeds = jax.vmap(draw, (0, None))(seed_data_keys, ts) if shared else None  # [S, g, n, B]
    if shared and span:
      u_seeds = jnp.moveaxis(u_seeds, 0, 1)  # [g, S, n, B]: a step's rows together
    out = [jax.lax.map(chunk_block(t, ts, u_seeds),
                       (st, chunk_seed, data_keys, dens, imp, lr, wd))
           for t, st in zip(trainers, states)]
    losses = jnp.stack([loss for _, loss in out])  # [A, chunks, g, C]
    return [state for state, _ in out], jnp.moveaxis(losses, 2, 0)

  on_window = None
  if plan.progress:
    on_window = lambda w: jax.debug.callback(report, chunk_ids[0], w)
  states = [jax.vmap(jax.vmap(t.init))(init_keys, scale) for t in trainers]
  states, history = scan_steps(spec, advance, states, step_bytes=plan.step_draw_bytes,
                               block_bytes=plan.block_bytes, on_window=on_window)
  # Chunk by chunk: the evaluation set is [n, eval_size] per model, too big for a grid.
  evals = [jax.lax.map(lambda c, t=t: jax.vmap(t.evaluate)(*c), (st.params, dens, imp))
           for t, st in zip(trainers, states)]
  stack = lambda xs: jnp.stack(xs)  # [A, chunks, C, ...]
  W2 = stack([st.params.W2 for st in states]) if states[0].params.W2 is not None else None
  return TrainOutput(stack([st.params.W for st in states]), stack([st.params.b for st in states]),
                     jnp.moveaxis(history, 0, -1), stack(evals), W2)


@functools.lru_cache(maxsize=32)
def _program(plan: Plan):
  """The jitted whole-grid program of `plan` (reads only the spec's static settings)."""
  spec = plan.spec
  A = len(spec.activations)
  shape = _point_grid(spec)
  index = plan.chunk_index()  # [chunks, C]
  mesh = jax.sharding.Mesh(np.asarray(plan.devices), ("grid",))

  def train_grid(densities, importance_vectors, lrs, seeds, weight_decays, init_scales):
    grid = functools.partial(_flat_points, grid=shape)
    swept = (densities, importance_vectors, lrs, weight_decays, init_scales)
    points = [grid(x, axis) for axis, x in enumerate(swept, start=1)]
    keys = point_keys(spec, densities, importance_vectors, lrs, seeds, weight_decays, init_scales)
    chunked = [x[index] for x in (keys, *points)]  # [chunks, C, ...]
    seed_keys = jax.vmap(jax.random.key)(seeds)
    P = jax.sharding.PartitionSpec
    out = jax.shard_map(functools.partial(_train_device, plan), mesh=mesh,
                        in_specs=(P("grid"),) * 8 + (P(),),
                        out_specs=P(None, "grid"), check_vma=False)(
        jnp.arange(plan.n_chunks), *chunked, jnp.asarray(plan.chunk_seeds()), seed_keys)
    # Chunk slots back to points (pads dropped): [A, S*Q, ...].
    first = plan.first_slots()
    out = jax.tree.map(lambda x: x.reshape((A, -1) + x.shape[3:])[:, first], out)
    arrays = _grid_metrics(spec, out)
    # [A, S*Q, ...] -> [A, D, I, L, WD, AL, S, ...] (`spec.AXES`)
    return {k: jnp.moveaxis(v.reshape((A,) + shape + v.shape[2:]), 1, len(shape))
            for k, v in arrays.items()}

  return jax.jit(train_grid)


def program_inputs(spec: SweepSpec) -> tuple[jax.Array, ...]:
  """The swept arrays the compiled program takes, in order: densities, importance
  vectors, lrs, seeds (the first four, `point_keys`' order), weight decays, init scales."""
  return (jnp.asarray(spec.densities, jnp.float32),
          jnp.asarray(spec.importance_matrix(), jnp.float32),
          jnp.asarray(spec.lrs, jnp.float32),
          jnp.asarray(spec.seeds, jnp.uint32),
          jnp.asarray(spec.weight_decays, jnp.float32),
          jnp.asarray(spec.init_scales, jnp.float32))


def compile_plan(plan: Plan):
  """Lowers and compiles `plan`'s program. Returns (executable, compile seconds)."""
  t0 = time.perf_counter()
  compiled = _program(plan).lower(*program_inputs(plan.spec)).compile()
  return compiled, time.perf_counter() - t0


def progress_ticks(plan: Plan) -> int:
  """Progress callbacks of a run: one per full log window and device."""
  return len(plan.devices) * (plan.spec.steps // plan.spec.log_every)


def run(spec: SweepSpec, *, progress: bool | None = None, chunk_size: int | None = None,
        max_memory: int | None = None,
        devices: Sequence[jax.Device] | None = None,
        span_seeds: bool | None = None) -> results.SweepResult:
  """Trains every model of `spec` in one compiled call and returns its results.

  Args:
    spec: the grid and settings.
    progress: print progress to stderr; None = only when stderr is a terminal.
    chunk_size: models trained together per scan; None = cache-sized, and small enough
      for `max_memory`. Results do not depend on it beyond float rounding.
    max_memory: byte budget for the run (see `plan.estimate_memory`); None = no limit.
    devices: devices to shard the grid over; None = the default backend's, as
      `plan.choose_devices` picks them (one host CPU device for large models).
    span_seeds: cut chunks across seeds (see `plan.make_plan`); None = where a seed has
      too few points to fill a chunk. Results do not depend on it beyond float rounding.
  """
  if progress is None:
    progress = sys.stderr.isatty()
  if devices is None:  # the spec is checked first: choose_devices reads it
    devices = choose_devices(check_spec(spec), jax.devices())
  plan = make_plan(spec, devices=devices, chunk_size=chunk_size,
                   max_memory=max_memory, progress=progress, span_seeds=span_seeds)
  compiled, compile_s = compile_plan(plan)
  display = Progress(progress_ticks(plan), spec.num_models * spec.steps) if progress else None
  with showing(display):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*program_inputs(spec)))
    if len({d.process_index for d in plan.devices}) > 1:  # multi-host: all get the grid
      from jax.experimental import multihost_utils
      out = multihost_utils.process_allgather(out, tiled=True)
    out = jax.tree.map(np.asarray, out)
    run_s = time.perf_counter() - t0
  meta = {
      "spec": spec.to_dict(),
      "spec_digest": spec.digest(),
      "env": environment(plan.devices),
      "engine": {"chunk_size": plan.chunk_size, "devices": len(plan.devices),
                 "span_seeds": plan.span_seeds,
                 "estimated_bytes": plan.estimated_bytes},
      "timings": {"compile_s": compile_s, "run_s": run_s,
                  "model_steps_per_s": spec.num_models * spec.steps / run_s},
  }
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  return results.SweepResult(coords=spec.coords(), data=out, extra=extra, meta=meta)
