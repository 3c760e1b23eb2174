"""The engine's training work done the slow ways, on the engine's own code.

Every way trains the models of a `SweepSpec` with `train.make_train`, the function the
engine vmaps: the same keys per point (`sweep.point_keys`: an init key and a data
key), the same data, AdamW step, loss windows and evaluation.
Their final weights therefore equal the engine's to float tolerance, and a benchmark of
them compares equal work:

  looped-jit     `jit(trainer.train)` of one model, called from Python point by point:
                 the best a careful user of plain JAX would write;
  looped-step    `jit(trainer.step)`, a Python loop over steps and points: what most
                 public ports do;
  looped-switch  the engine's chunks cut per seed (`plan.make_plan(span_seeds=False)`:
                 the engine's own layout unless its chunks span seeds, as at n=10) of
                 every activation in one
                 program, the activation picked per model by `lax.switch`; under `vmap` a
                 switch with a batched index runs every branch for every model, which is
                 why the engine compiles one program branch per activation instead. Each
                 chunk runs `trainer.fit` (its steps inside, chunk after chunk), so it
                 draws its seed's uniforms for itself, where the engine now draws them
                 once per seed for all of that seed's chunks.

    compile_s, run_s, W = looped_jit(spec, points=(0, 5))   # W: {point: [m, n]}
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import activations, sweep
from superpos_jax.activations import Activation
from superpos_jax.plan import Plan, make_plan
from superpos_jax.spec import SweepSpec
from superpos_jax.train import TrainState, draw_uniforms, make_train

# (compile seconds, run seconds, final W of every trained point)
Timed = tuple[float, float, dict[int, np.ndarray]]


class GridPoints(NamedTuple):
  """The swept values of every grid point, flat in the engine's result order.

  Point p is `np.unravel_index(p, spec.grid_shape)`: activation, density, importance,
  lr, weight decay, init scale, seed, the leading axes of every `SweepResult` array. The
  looped ways train one weight decay and init scale (the study's grids); `_one_setting`
  checks it.
  """

  activation: np.ndarray  # [P] int32, index into spec.activations
  density: np.ndarray  # [P] float32
  importance: np.ndarray  # [P, n] float32
  lr: np.ndarray  # [P] float32
  seed: np.ndarray  # [P] uint32
  key: jax.Array  # [P, 2] the point's (init, data) keys, as the engine derives them


def grid_points(spec: SweepSpec) -> GridPoints:
  """Every grid point of `spec`, in the engine's flat (activation, ..., seed) order."""
  _one_setting(spec)
  a, d, i, l, _, _, s = (x.ravel() for x in np.indices(spec.grid_shape))
  _, D, I, L, _, _, _ = spec.grid_shape
  # point_keys orders a grid's points (seed, density, importance, lr, ...) per activation.
  keys = sweep.point_keys(spec, *sweep.program_inputs(spec)[:4])
  return GridPoints(activation=a.astype(np.int32),
                    density=np.asarray(spec.densities, np.float32)[d],
                    importance=spec.importance_matrix().astype(np.float32)[i],
                    lr=np.asarray(spec.lrs, np.float32)[l],
                    seed=np.asarray(spec.seeds, np.uint32)[s],
                    key=keys[((s * D + d) * I + i) * L + l])


def _one_setting(spec: SweepSpec) -> None:
  if len(spec.weight_decays) != 1 or spec.init_scales != (1.0,):
    raise ValueError("the looped benchmarks train one weight decay and init scale 1")


def subset_points(spec: SweepSpec, per_activation: int | None) -> np.ndarray:
  """Flat indices of `per_activation` points of each activation, evenly spread.

  Args:
    spec: the grid.
    per_activation: points per activation; None (or at least the points per
      activation) selects every point.

  Returns:
    `[k * A]` flat point indices, activation by activation.
  """
  per_act = spec.num_models // len(spec.activations)
  k = per_act if per_activation is None else min(per_activation, per_act)
  within = np.unique(np.linspace(0, per_act - 1, k).round().astype(np.int64))
  return np.concatenate([a * per_act + within for a in range(len(spec.activations))])


def _split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A point's init and data keys (`sweep.point_keys` gives them as a pair)."""
  return key[0], key[1]


def _compile_per_activation(spec: SweepSpec, gp: GridPoints, points: Sequence[int],
                            build: Callable[[Activation, int], object]):
  """`build(act, p)` once per activation of `points` (what jit's cache would do), timed."""
  built, t0 = {}, time.perf_counter()
  for p in points:
    a = int(gp.activation[p])
    if a not in built:
      built[a] = build(activations.get(spec.activations[a]), p)
  return built, time.perf_counter() - t0


def _swept_values(spec: SweepSpec) -> tuple[GridPoints, Callable[[int], tuple]]:
  """The grid points, and `p -> (density, importance, lr, weight decay)` of point p."""
  gp = grid_points(spec)
  wd = np.float32(spec.weight_decays[0])
  return gp, lambda p: (gp.density[p], gp.importance[p], gp.lr[p], wd)


def looped_jit(spec: SweepSpec, points: Sequence[int]) -> Timed:
  """looped-jit: one compiled `trainer.train` per activation, called point by point.

  Args:
    spec: the workload.
    points: flat indices of the points to train, one after another.

  Returns:
    (compile seconds, run seconds, {point: final W [m, n]}).
  """
  gp, swept = _swept_values(spec)
  args = lambda p: (gp.key[p], *swept(p))

  def build(act, p):
    trainer = make_train(spec, act)
    train = lambda key, *swept: trainer.train(*_split_key(key), *swept)
    return jax.jit(train).lower(*args(p)).compile()

  compiled, compile_s = _compile_per_activation(spec, gp, points, build)
  W, t0 = {}, time.perf_counter()
  for p in points:
    out = compiled[int(gp.activation[p])](*args(p))
    W[p] = np.asarray(out.W)  # waits for the point before the next starts, as a loop would
  return compile_s, time.perf_counter() - t0, W


class StepFns(NamedTuple):
  """looped-step's three compiled functions of one activation."""

  init: Callable  # (key, lr, weight decay) -> (TrainState, data_key)
  step: Callable  # (state, data_key, t, density, importance, lr, wd) -> (state, loss)
  evaluate: Callable  # (params, density, importance) -> eval loss


def make_step_fns(spec: SweepSpec, act: Activation) -> StepFns:
  """looped-step's functions (not compiled): one AdamW step per call, drawing its batch.

  Args:
    spec: static settings.
    act: the activation.

  Returns:
    `StepFns` built on `make_train(spec, act)`'s init, step and evaluate.
  """
  trainer = make_train(spec, act)

  def init(key, lr, weight_decay):
    init_key, data_key = _split_key(key)
    return trainer.init(init_key, 1.0, lr, weight_decay), data_key

  def step(state: TrainState, data_key, t, density, importance, lr, weight_decay):
    # train.py's draw for a block of one step: a port draws one batch per step.
    u = draw_uniforms(data_key, jnp.reshape(t, (1,)), spec.n, spec.batch_size)[0]
    return trainer.step(state, u, density, importance, lr, weight_decay)

  return StepFns(init, step, trainer.evaluate)


def looped_step(spec: SweepSpec, points: Sequence[int]) -> Timed:
  """looped-step: a Python loop over points and steps, one compiled step per call.

  Args and returns are those of `looped_jit`.
  """
  gp, swept = _swept_values(spec)

  def build(act, p):
    fns = make_step_fns(spec, act)
    init = jax.jit(fns.init).lower(gp.key[p], *swept(p)[2:]).compile()
    state, data_key = init(gp.key[p], *swept(p)[2:])
    step = jax.jit(fns.step).lower(state, data_key, 0, *swept(p)).compile()
    evaluate = jax.jit(fns.evaluate).lower(state.params, *swept(p)[:2]).compile()
    return StepFns(init, step, evaluate)

  compiled, compile_s = _compile_per_activation(spec, gp, points, build)
  W, t0 = {}, time.perf_counter()
  for p in points:
    fns, values = compiled[int(gp.activation[p])], swept(p)
    state, data_key = fns.init(gp.key[p], *values[2:])
    history = []
    for t in range(spec.steps):
      state, loss = fns.step(state, data_key, t, *values)
      if (t + 1) % spec.log_every == 0:
        history.append(float(loss))  # a port logs the loss once per window
    float(fns.evaluate(state.params, *values[:2]))
    W[p] = np.asarray(state.params.W)
  return compile_s, time.perf_counter() - t0, W


def _switch_activation(acts: Sequence[Activation], index: jax.Array) -> Activation:
  """One activation of `[n, B]` that runs `acts[index]` through `lax.switch`."""
  branches = [jax.vmap(a.fn, in_axes=1, out_axes=1) if a.per_example else a.fn for a in acts]
  return Activation(name="switch", description="lax.switch over activations",
                    fn=lambda z: jax.lax.switch(index, branches, z))


def switch_layout(spec: SweepSpec, plan: Plan) -> np.ndarray:
  """`[A * n_chunks, C]` flat grid point of every chunk slot: the engine's chunks
  (`plan.chunk_index()`, pads included) of each activation in turn."""
  A, D, I, L, WD, AL, S = spec.grid_shape
  s, d, i, l, w, al = np.unravel_index(plan.chunk_index(), (S, D, I, L, WD, AL))
  return np.concatenate([np.ravel_multi_index((np.full_like(s, a), d, i, l, w, al, s),
                                              spec.grid_shape) for a in range(A)])


def make_switch_program(spec: SweepSpec, plan: Plan) -> Callable:
  """looped-switch's jitted program: every activation's chunks, one activation per model.

  Args:
    spec: the workload.
    plan: a plan of `spec` with chunks cut per seed (chunk size, draw block, devices).

  Returns:
    `program(act, key, density, importance, lr, weight_decay) -> TrainOutput` with every
    argument but the weight decay `[chunks, C, ...]` (see `switch_layout`); chunks are
    `lax.map`ped and sharded over `plan.devices`.
  """
  acts = [activations.get(a) for a in spec.activations]
  trainer = make_train(spec, acts[0])  # its init does not depend on the activation
  shared = spec.rng == "shared"
  # A chunk draws one stream (its seed's) or one per model; its draw keeps to the plan's.
  block_bytes = plan.block_bytes // (1 if shared else plan.chunk_size)

  def fit(act, state, data_key, density, importance, lr, weight_decay):
    switch = make_train(spec, _switch_activation(acts, act), draw_block_bytes=block_bytes)
    return switch.fit(state, data_key, density, importance, lr, weight_decay)

  def train_chunk(chunk, weight_decay):
    act, keys, density, importance, lr = chunk
    init_keys, data_keys = jax.vmap(_split_key)(keys)
    # Shared random numbers: the chunk's models share a seed, so one draw serves them all.
    data_keys, data_axis = (data_keys[0], None) if shared else (data_keys, 0)
    states = jax.vmap(trainer.init, in_axes=(0, None, 0, None))(init_keys, 1.0, lr, weight_decay)
    return jax.vmap(fit, in_axes=(0, 0, data_axis, 0, 0, 0, None))(
        act, states, data_keys, density, importance, lr, weight_decay)

  def per_device(act, keys, density, importance, lr, weight_decay):
    return jax.lax.map(lambda c: train_chunk(c, weight_decay),
                       (act, keys, density, importance, lr))

  grid = jax.sharding.PartitionSpec("grid")
  mesh = jax.sharding.Mesh(np.asarray(plan.devices), ("grid",))
  return jax.jit(jax.shard_map(per_device, mesh=mesh,
                               in_specs=(grid,) * 5 + (jax.sharding.PartitionSpec(),),
                               out_specs=grid, check_vma=False))


def looped_switch(spec: SweepSpec, devices: Sequence[jax.Device]) -> Timed:
  """looped-switch: the whole grid in one call, with the engine's chunking.

  Args:
    spec: the workload.
    devices: the chunks are sharded over these.

  Returns:
    (compile seconds, run seconds, {point: final W [m, n]} of every point).
  """
  # Chunks cut per seed: a chunk's models share one draw (its seed's), as before the
  # engine's chunks could span seeds.
  plan = make_plan(spec, devices=devices, span_seeds=False)
  layout = switch_layout(spec, plan)
  gp = grid_points(spec)
  inputs = (gp.activation[layout], gp.key[layout], gp.density[layout],
            gp.importance[layout], gp.lr[layout], np.float32(spec.weight_decays[0]))
  t0 = time.perf_counter()
  compiled = make_switch_program(spec, plan).lower(*inputs).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  W = np.asarray(compiled(*inputs).W)  # waits for the whole grid
  run_s = time.perf_counter() - t0
  first_slot = np.unique(layout.ravel(), return_index=True)[1]
  return compile_s, run_s, dict(enumerate(W.reshape((-1,) + W.shape[2:])[first_slot]))
