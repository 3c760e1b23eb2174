"""The compiled grid: the one-model trainer (`train.py`) turned into ONE XLA program.

The grid is activation × density × importance × lr × weight decay × init scale × seed
(`spec.AXES`); the model family, data family and init family are static. Inside the
program the points are grouped by activation (a `lax.switch` over activations under
`vmap` would evaluate every branch at every point); each activation's points are cut
into chunks (`plan.py`), a chunk is `vmap(step)`, `lax.map` runs the chunks one after
another inside the scan over steps, and `shard_map` spreads them over the devices. The
results are scattered back to the grid. `grid_program` is the whole training in one
call; `stage_programs` cuts the same operations at log-window boundaries, for training
in stages with checkpoints between them (`staged.py`). Both are generic over a `Kind`
of grid: the toy grid's (below) and the SAE grid's (`sae/grid.py`) run in the same
shape, steps outside and chunks inside, so both train in stages and checkpoint alike.

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
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import activations, metrics, results
from superpos_jax.plan import Plan
from superpos_jax.progress import report
from superpos_jax.spec import GRID, SpecError, SweepSpec
from superpos_jax.train import TrainOutput, draw_uniforms, make_train, output, scan_steps


def _float_bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)


# Point axes within an activation, in program order (the seed first: chunks are cut per
# seed, which shares its random numbers); the result's order is `spec.AXES`.
POINT_AXES = ("seed",) + tuple(a.name for a in GRID if a.name not in ("activation", "seed"))
# The axes of how a point is optimised (not of the problem it solves): every value of
# them shares the point's start (see `point_keys`).
SHARED_START_AXES = ("lr", "weight_decay", "init_scale")
# The lr whose bits every key is folded with: keys were once folded with each point's own
# lr, so folding this one for every lr keeps each lr = 1e-3 key (every preset's) as it was.
_KEY_LR = 1e-3


def point_grid(spec: SweepSpec) -> tuple[int, ...]:
  """`(S, D, I, L, WD, AL)`: the point grid of one activation, in `POINT_AXES` order."""
  A, D, I, L, WD, AL, S = spec.grid_shape
  return (S, D, I, L, WD, AL)


def _flat_points(x: jax.Array, axis: int, grid: tuple[int, ...]) -> jax.Array:
  """`x`, the values of point axis `axis` of `grid` (`point_grid`; `x` may have trailing
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
  shape = point_grid(spec)
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
  # The family's other params ("W2" of the untied "abs", whose W is W₁); names not in
  # the result schema get a "param_" prefix (results.PARAM_PREFIX).
  arrays.update({results.param_key(k): v for k, v in out.extra.items()})
  finite_w = jnp.all(jnp.isfinite(W), axis=(-2, -1)) & jnp.all(jnp.isfinite(b), axis=-1)
  arrays["diverged"] = ~(finite_w & jnp.all(jnp.isfinite(history), axis=-1))
  # A NaN model can still score a finite loss (relu(NaN) may come out as 0): never let it
  # look like a good seed.
  for k in ("eval_loss", "final_loss"):
    arrays[k] = jnp.where(arrays["diverged"], jnp.nan, arrays[k])
  if spec.n == 2:
    arrays["phase"] = per_model(lambda w: metrics.classify_phase(w, spec.thresholds))(W)
  return arrays


def _trainers(plan: Plan) -> list:
  return [make_train(plan.spec, act) for act in map(activations.get, plan.spec.activations)]


def _toy_init(plan: Plan, sharded, replicated) -> list:
  """Every activation's initial states of one device's chunks (`keys: [chunks, C, 2]`;
  each optimiser state made with its point's own lr and weight decay)."""
  _, keys, _, _, lr, wd, scale, _ = sharded
  return [jax.vmap(jax.vmap(t.init))(keys[..., 0], scale, lr, wd) for t in _trainers(plan)]


def _toy_steps(plan: Plan, states, sharded, replicated, windows=None, last=True):
  """Trains one device's chunks of every activation, one block of steps at a time, for
  the log windows `windows` (`train.scan_steps`; None: all of them).

  The loop over steps is outside, the `lax.map` over chunks inside it: with shared
  random numbers each block draws one batch of uniforms per seed, which every chunk of
  that seed reads (rather than one draw per chunk and step); where chunks span seeds,
  each model indexes its seed's row of the step's `[S, n, B]` draw inside the vmapped
  step (a per-chunk gathered copy measured no faster). Only the chunks' states, which
  are small, are carried from block to block. `chunk_seed`: `[chunks, C]`.
  Returns `(states, history [T, A, chunks, C])`.
  """
  chunk_ids, keys, dens, imp, lr, wd, _, chunk_seed = sharded
  (seed_keys,) = replicated
  spec, shared, span = plan.spec, plan.spec.rng == "shared", plan.span_seeds
  trainers = _trainers(plan)
  data_keys = keys[..., 1]  # [chunks, C]
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

  return scan_steps(spec, advance, states, step_bytes=plan.step_draw_bytes,
                    block_bytes=plan.block_bytes, on_window=on_window(plan, chunk_ids),
                    windows=windows, last=last)


def on_window(plan: Plan, chunk_ids) -> Callable | None:
  """The progress callback of one device (`progress.report`), None without progress."""
  if not plan.progress:
    return None
  return lambda w: jax.debug.callback(report, chunk_ids[0], w)


def _toy_finish(plan: Plan, states, history, sharded, replicated) -> TrainOutput:
  """One device's outputs: final weights, the history `[T, A, chunks, C]` moved to
  `[A, chunks, C, T]`, and the evaluation, chunk by chunk (the evaluation set is
  `[n, eval_size]` per model, too big for a grid)."""
  dens, imp = sharded[2], sharded[3]
  evals = [jax.lax.map(lambda c, t=t: jax.vmap(t.evaluate)(*c), (st.params, dens, imp))
           for t, st in zip(_trainers(plan), states)]
  # [A, chunks, C, ...]; W, b and the family's other params by name (`train.output`).
  params = jax.tree.map(lambda *xs: jnp.stack(xs), *[st.params for st in states])
  return output(params, jnp.moveaxis(history, 0, -1), jnp.stack(evals))


def _toy_chunked(plan: Plan, densities, importance_vectors, lrs, seeds, weight_decays,
                 init_scales) -> tuple:
  """`(sharded, replicated)` arguments of every stage: `(chunk ids, keys, densities,
  importances, lrs, weight decays, init scales, chunk seeds)`, each `[chunks, ...]`
  (sharded over devices), and `(the seeds' keys [S],)` (on every device)."""
  spec = plan.spec
  grid = functools.partial(_flat_points, grid=point_grid(spec))
  swept = (densities, importance_vectors, lrs, weight_decays, init_scales)
  points = [grid(x, axis) for axis, x in enumerate(swept, start=1)]
  keys = point_keys(spec, densities, importance_vectors, lrs, seeds, weight_decays, init_scales)
  index = plan.chunk_index()  # [chunks, C]
  chunked = [x[index] for x in (keys, *points)]  # [chunks, C, ...]
  return ((jnp.arange(plan.n_chunks), *chunked, jnp.asarray(plan.chunk_seeds())),
          (jax.vmap(jax.random.key)(seeds),))


def _toy_to_grid(plan: Plan, out: TrainOutput) -> dict[str, jax.Array]:
  """The chunk slots' outputs `[A, chunks, C, ...]` as result arrays on the grid (pads
  dropped): `[A, D, I, L, WD, AL, S, ...]` (`spec.AXES`)."""
  spec = plan.spec
  A, shape = len(spec.activations), point_grid(spec)
  first = plan.first_slots()
  out = jax.tree.map(lambda x: x.reshape((A, -1) + x.shape[3:])[:, first], out)
  arrays = _grid_metrics(spec, out)
  return {k: jnp.moveaxis(v.reshape((A,) + shape + v.shape[2:]), 1, len(shape))
          for k, v in arrays.items()}


def _toy_inputs(spec: SweepSpec) -> tuple[jax.Array, ...]:
  """The swept arrays the toy grid's program takes, in order: densities, importance
  vectors, lrs, seeds (the first four, `point_keys`' order), weight decays, init scales."""
  return (jnp.asarray(spec.densities, jnp.float32),
          jnp.asarray(spec.importance_matrix(), jnp.float32),
          jnp.asarray(spec.lrs, jnp.float32),
          jnp.asarray(spec.seeds, jnp.uint32),
          jnp.asarray(spec.weight_decays, jnp.float32),
          jnp.asarray(spec.init_scales, jnp.float32))


_P = jax.sharding.PartitionSpec


class Kind(NamedTuple):
  """A kind of grid the skeleton below trains: how its swept values become the chunks'
  inputs, and one device's init, steps and finish (the toy grid's `TOY`; the SAE grid's
  in `sae/grid.py`). Every device function takes `sharded`, a tuple of this device's
  `[chunks, C, ...]` arrays, and `replicated`, a tuple every device holds whole."""

  inputs: Callable  # spec -> the swept arrays, the program's arguments
  chunked: Callable  # (plan, *swept) -> (sharded, replicated), every device's chunks
  init: Callable  # (plan, sharded, replicated) -> states, leaves [chunks, C, ...]
  # (plan, states, sharded, replicated, windows=None, last=True) -> (states, history
  # [T, groups, chunks, C, *history_tail]), through `train.scan_steps`
  steps: Callable
  finish: Callable  # (plan, states, history, sharded, replicated) -> outputs
  to_grid: Callable  # (plan, outputs) -> {name: result array}, pads dropped
  out_spec: Any  # how `finish`'s outputs lie over the devices (their chunk axis)
  history_tail: Callable  # spec -> the history's dims after C: () for one loss per point


TOY = Kind(_toy_inputs, _toy_chunked, _toy_init, _toy_steps, _toy_finish, _toy_to_grid,
           _P(None, "grid"), lambda spec: ())
_KINDS: dict[type, Kind] = {SweepSpec: TOY}


def register_kind(spec_type: type, kind: Kind) -> None:
  """Makes `kind` the program of every grid spec of `spec_type` (a `gridspec.GridSpec`)."""
  _KINDS[spec_type] = kind


def kind_of(spec) -> Kind:
  """The `Kind` registered for `spec`'s type."""
  for cls in type(spec).__mro__:
    if cls in _KINDS:
      return _KINDS[cls]
  raise SpecError(f"no program is registered for a {type(spec).__name__}")


def program_inputs(spec) -> tuple[jax.Array, ...]:
  """The swept arrays `spec`'s compiled program takes (`Kind.inputs`; the toy grid's:
  densities, importance vectors, lrs, seeds, weight decays, init scales)."""
  return kind_of(spec).inputs(spec)


def _mesh(plan: Plan):
  return jax.sharding.Mesh(np.asarray(plan.devices), ("grid",))


def _train_device(kind: Kind, plan: Plan, sharded, replicated):
  """One device's whole training: init, every step, outputs."""
  states = kind.init(plan, sharded, replicated)
  states, history = kind.steps(plan, states, sharded, replicated)
  return kind.finish(plan, states, history, sharded, replicated)


@functools.lru_cache(maxsize=32)
def grid_program(plan: Plan):
  """The jitted whole-grid program of `plan` (reads only the spec's static settings)."""
  kind = kind_of(plan.spec)

  def train_grid(*swept):
    sharded, replicated = kind.chunked(plan, *swept)
    out = jax.shard_map(functools.partial(_train_device, kind, plan), mesh=_mesh(plan),
                        in_specs=(_P("grid"), _P()), out_specs=kind.out_spec,
                        check_vma=False)(sharded, replicated)
    return kind.to_grid(plan, out)

  return jax.jit(train_grid)


class Stages(NamedTuple):
  """The training of `plan` as three jitted programs, for training in stages that can be
  checkpointed between them (`run(checkpoint_dir=...)`): `init(*swept) -> states`,
  `steps(states, first_window, *swept) -> (states, history [K, groups, chunks, C, ...])`
  for K = `windows` full log windows from `first_window` (the partial last window
  included where `last`), and `finish(states, history [T, ...], *swept) -> arrays`. The
  same operations as `grid_program`, cut at log-window boundaries."""

  init: Callable
  steps: Callable
  finish: Callable


@functools.lru_cache(maxsize=32)
def stage_programs(plan: Plan, windows: int, last: bool) -> Stages:
  """`Stages` of `plan`, `steps` covering `windows` log windows (and the partial last
  window where `last`)."""
  kind, mesh, grid, hist = kind_of(plan.spec), _mesh(plan), _P("grid"), _P(None, None, "grid")

  def init(*swept):
    return jax.shard_map(functools.partial(kind.init, plan), mesh=mesh, in_specs=(grid, _P()),
                         out_specs=grid, check_vma=False)(*kind.chunked(plan, *swept))

  def steps(states, first, *swept):
    body = lambda st, f, sh, rep: kind.steps(plan, st, sh, rep, windows=(f, windows), last=last)
    return jax.shard_map(body, mesh=mesh, in_specs=(grid, _P(), grid, _P()),
                         out_specs=(grid, hist), check_vma=False)(
        states, first, *kind.chunked(plan, *swept))

  def finish(states, history, *swept):
    out = jax.shard_map(functools.partial(kind.finish, plan), mesh=mesh,
                        in_specs=(grid, hist, grid, _P()), out_specs=kind.out_spec,
                        check_vma=False)(states, history, *kind.chunked(plan, *swept))
    return kind.to_grid(plan, out)

  return Stages(jax.jit(init), jax.jit(steps, donate_argnums=0), jax.jit(finish))


def lower_plan(plan: Plan):
  """`plan`'s program lowered, every matrix product at `plan.precision` ("float32":
  `Precision.HIGHEST`, exact float32 on every backend, not the TF32/bfloat16 passes that
  GPUs and TPUs use by default)."""
  with jax.default_matmul_precision(plan.precision):
    return grid_program(plan).lower(*program_inputs(plan.spec))


def compile_plan(plan: Plan):
  """Lowers (`lower_plan`) and compiles `plan`'s program. Returns (executable, compile
  seconds)."""
  t0 = time.perf_counter()
  compiled = lower_plan(plan).compile()
  return compiled, time.perf_counter() - t0


def progress_ticks(plan: Plan) -> int:
  """Progress callbacks this process receives: one per full log window and local device
  (on several hosts each process hears only its own devices)."""
  local = sum(getattr(d, "process_index", 0) == jax.process_index() for d in plan.devices)
  return local * (plan.spec.steps // plan.spec.log_every)


# Stages per run at most, where there are that many log windows: enough for a checkpoint
# every few minutes of a long run, few enough that the stage boundaries cost nothing.
MAX_STAGES = 50


def stage_windows(spec: SweepSpec) -> int:
  """Full log windows per stage of a staged (checkpointed) training."""
  return max(1, -(-(spec.steps // spec.log_every) // MAX_STAGES))
