"""The training of ONE toy model, top to bottom (the pattern of PureJaxRL's `make_train`).

    trainer = make_train(spec, activations.get("relu"))
    out = trainer.train(init_key, data_key, density, importance, lr, weight_decay, init_scale)

`make_train` reads only the static settings of `spec` (n, m, steps, batch size, init,
model and data families, log window, evaluation size) and returns pure functions of one
model's swept values. The sweep adds every grid axis with `jax.vmap` (see `sweep.py`);
nothing here knows about grids, chunks or devices. This is the one place where a new model family, data
distribution or initialisation enters.

One model's training:
  1. init: `W [m, n]` (and the `abs` model's `W2 [n, m]`) from the init family's normal
     times the init scale α (`inits`, `model.init_params`), b = 0; the optimiser's state.
  2. data: step t's batch is `data.features(spec.data, u_t, density)` with
     `u_t ~ U[0,1)^[n, B]` drawn from `fold_in(data_key, t)`: every data family uses one
     uniform per feature, so the draw's shape is the same for all of them. A data key
     shared by several models (not batched under vmap) gives them common random numbers,
     drawn once for all of them.
  3. step: the importance-weighted loss of the model family (`loss.family_loss`) and
     one update of the spec's optimiser (`optimizers.py`; by default AdamW with
     PyTorch's defaults, decoupled decay on W and b alike; "adamw_liu" is Liu et al.'s,
     `transforms.liu_adamw`).
  4. loop: `lax.scan` over log windows of `log_every` steps, each the mean training loss of
     its steps; uniforms are drawn for a block of steps at once (the same numbers as step
     by step, cheaper per number).
  5. evaluation: the loss on one fixed set of examples (`EVAL_SEED`), the same for every
     model of every grid, so that seeds can be compared fairly.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from superpos_jax import data, families, optimizers  # noqa: F401 (the built-in optimisers, part of the engine)
from superpos_jax.activations import Activation
from superpos_jax.loss import columns, family_loss
from superpos_jax.model import Params, init_params, named_params
from superpos_jax.model import state_bytes as model_state_bytes
from superpos_jax.spec import SpecError, SweepSpec
from superpos_jax.errors import first_line

# Seed of the evaluation set: one fixed set of examples for every model of every grid.
EVAL_SEED = 2**31 - 1
# Uniforms drawn at once for a block of steps, at most: threefry on CPU costs ~26 ns per
# number in a [2, 1024] draw and ~5 ns in a [100, 2, 1024] one (measured, 2-core CPU).
DRAW_BLOCK_BYTES = 2**21


class TrainState(NamedTuple):
  params: Params
  opt_state: optax.OptState


class TrainOutput(NamedTuple):
  W: jax.Array  # [m, n] final weights
  b: jax.Array  # [n] final bias
  loss_history: jax.Array  # [T] mean training loss of each log window
  eval_loss: jax.Array  # [] loss on the fixed evaluation set
  # Every other final parameter by name (`model.named_params`): "W2" [n, m] of "abs", a
  # Flax family's own ("c", "LayerNorm_0.scale", ...); empty for the tied built-ins.
  extra: dict[str, jax.Array] = {}


def block_steps(length: int, step_bytes: int, block_bytes: int = DRAW_BLOCK_BYTES) -> int:
  """Steps per random draw: the largest divisor of `length` within `block_bytes`."""
  most = max(1, block_bytes // step_bytes)
  return max(g for g in range(1, min(length, most) + 1) if length % g == 0)


def draw_uniforms(data_key: jax.Array, ts: jax.Array, n: int, batch_size: int) -> jax.Array:
  """`[g, n, B]` uniforms of steps `ts: [g]`, step t's from `fold_in(data_key, t)`: the
  same numbers as step by step (vmap of a counter-based PRNG), drawn at once because a
  big draw costs ~5x less per number."""
  return jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(data_key, t), (n, batch_size)))(ts)


def scan_steps(spec: SweepSpec, advance: Callable, state, *, step_bytes: int,
               block_bytes: int = DRAW_BLOCK_BYTES,
               on_window: Callable[[jax.Array], None] | None = None,
               windows: tuple | None = None, last: bool = True):
  """Runs the steps of a training, log window by log window.

  Args:
    spec: its `steps` and `log_every` set the windows.
    advance: `advance(state, ts) -> (state, losses [g, ...])` runs the steps `ts: [g]`, a
      block whose uniforms are drawn at once.
    state: the starting state (any pytree: one model's, or a whole grid's).
    step_bytes: bytes of one step's uniforms; blocks hold at most `block_bytes`.
    on_window: called with the window index after every full window (in the program).
    windows: `(first, count)`: only the full windows `first .. first + count - 1` (`first`
      may be traced: one program serves every stage of a staged training); None: all.
    last: also run the partial window of `steps % log_every` steps at the end, if any.

  Returns:
    `(state, history [T, ...])`, a window's entry the mean loss of its steps.
  """
  n_windows, remainder = divmod(spec.steps, spec.log_every)

  def window(state, start, length):
    g = block_steps(length, step_bytes, block_bytes)
    ts = (start + jnp.arange(length)).reshape(length // g, g)
    state, losses = jax.lax.scan(advance, state, ts)  # [length // g, g, ...]
    return state, jnp.mean(losses.reshape((length,) + losses.shape[2:]), axis=0)

  def full_window(state, w):
    state, loss = window(state, w * spec.log_every, spec.log_every)
    if on_window is not None:
      on_window(w)
    return state, loss

  ws = jnp.arange(n_windows) if windows is None else windows[0] + jnp.arange(windows[1])
  state, history = jax.lax.scan(full_window, state, ws)
  if remainder and last:
    state, tail = window(state, n_windows * spec.log_every, remainder)
    history = jnp.concatenate([history, tail[None]])
  return state, history


def output(params, history: jax.Array, eval_loss: jax.Array) -> TrainOutput:
  """A `TrainOutput` of any family's params: `W` and `b`, the rest in `extra`."""
  named = named_params(params)
  W, b = named.pop("W"), named.pop("b")
  return TrainOutput(W, b, history, eval_loss, named)


# Examples the family check runs through a fresh model (`check_families`).
CHECK_BATCH = 64


def check_families(spec: SweepSpec) -> None:
  """Checks the spec's registered model and data families and optimiser before the grid
  is compiled: shapes, parameter names and dtypes (by `jax.eval_shape`), then one fresh
  model of the first grid point (seed 0) through a small batch, which must be finite.
  One small program per definition and static shape (cached): other swept values reuse it.

  Raises:
    SpecError: one line naming the family and what is wrong.
  """
  acts, model, data_family, opt = families.entries(spec)
  probe = _family_check(acts, model, data_family, opt, spec.n, spec.m, spec.init,
                        spec.init_instances)
  bad_params, bad_loss = probe(jnp.float32(spec.densities[0]), jnp.float32(spec.init_scales[0]),
                               jnp.asarray(spec.importance_matrix()[0], jnp.float32))
  bad = [k for k, v in bad_params.items() if bool(v)]
  if bad:
    raise SpecError(f"model family {spec.model!r} initialises to NaN/inf in {', '.join(bad)} "
                    f"(n={spec.n}, m={spec.m})")
  for act, v in zip(acts, np.asarray(bad_loss)):
    if v:
      raise SpecError(f"model family {spec.model!r} gives a NaN/inf loss at init with "
                      f"activation {act.name!r} (seed 0, density {spec.densities[0]:g})")


# long: the structural checks of a family, one after another, each with its own message
@functools.lru_cache(maxsize=64)
def _family_check(acts, model, data_family, opt, n: int, m: int, init: str, instances: int):
  """The structural checks of `check_families` (raise), then its jitted finite check
  `probe(density, init_scale, importance [n]) -> ({param: non-finite}, [A] non-finite)`."""
  B, f32 = CHECK_BATCH, jnp.dtype(jnp.float32)
  name = f"model family {model.name!r}"
  u = jax.ShapeDtypeStruct((n, B), jnp.float32)
  try:
    present, value = jax.eval_shape(lambda u: data_family.fn(u, jnp.float32(0.5)), u)
  except Exception as e:  # the user's code: say whose, in one line
    raise SpecError(f"data family {data_family.name!r} failed on uniforms [{n}, {B}]: "
                    f"{first_line(e)}") from None
  if present.shape != (n, B) or value.shape != (n, B) or present.dtype != jnp.bool_:
    raise SpecError(f"data family {data_family.name!r} must map uniforms [{n}, {B}] to (present "
                    f"bool, value) of that shape, got {present.dtype}{list(present.shape)}, "
                    f"{value.dtype}{list(value.shape)}")

  def init_with(key, scale, act):
    return init_params(key, n, m, init=init, instances=instances, model=model.name,
                       scale=scale, act=act)

  try:  # the family's own params, before the engine draws `model.draw` into them
    shapes = named_params(jax.eval_shape(lambda k: model.init(k, n, m, acts[0].fn),
                                         jax.random.key(0)))
  except Exception as e:
    raise SpecError(f"{name} failed to initialise (n={n}, m={m}): {first_line(e)}") from None
  got = ", ".join(f"{p} {list(v.shape)}" for p, v in shapes.items())
  for k, shape in (("W", (m, n)), ("b", (n,))):
    if k not in shapes or shapes[k].shape != shape:
      raise SpecError(f"{name} needs params W [{m}, {n}] and b [{n}] (what metrics and plots "
                      f"read), got {got}")
  missing = [k for k in model.draw if k not in shapes]
  if missing:
    raise SpecError(f"{name} draws {', '.join(missing)}, which its params lack ({got})")
  for k, v in shapes.items():
    if v.dtype != f32:
      raise SpecError(f"{name}: param {k} is {v.dtype}, the engine trains float32")
  if not isinstance(opt.make(1.0, 0.0, steps=1), optax.GradientTransformation):
    raise SpecError(f"optimizer {opt.name!r} must return an optax.GradientTransformation")
  x = jax.ShapeDtypeStruct((n, B), jnp.float32)
  for act in acts:
    try:
      out = jax.eval_shape(lambda k, xs: model.apply(init_with(k, 1.0, act.fn), xs,
                                                     columns(act.fn, act.per_example)),
                           jax.random.key(0), x)
    except Exception as e:
      raise SpecError(f"{name} failed on inputs [{n}, {B}] with activation {act.name!r}: "
                      f"{first_line(e)}") from None
    if out.shape != (n, B) or out.dtype != f32:
      raise SpecError(f"{name} must output float32 [{n}, {B}] for inputs [{n}, {B}], got "
                      f"{out.dtype}{list(out.shape)} (activation {act.name!r})")

  @jax.jit
  def probe(density, scale, importance):
    u = jax.random.uniform(jax.random.key(0), (n, B))
    present, value = data_family.fn(u, density)
    xs = jnp.where(present, 2.0 * value - 1.0 if model.signed else value, 0.0)
    params = init_with(jax.random.key(0), scale, acts[0].fn)
    bad_params = {k: ~jnp.all(jnp.isfinite(v)) for k, v in named_params(params).items()}
    bad_loss = jnp.stack([~jnp.isfinite(family_loss(
        model, init_with(jax.random.key(0), scale, act.fn), xs, importance, act.fn,
        per_example=act.per_example)) for act in acts])
    return bad_params, bad_loss

  return probe


def state_bytes(spec: SweepSpec) -> tuple[int, int]:
  """`(training state, params)` bytes of one model of `spec` (`model.state_bytes`)."""
  return model_state_bytes(*families.entries(spec)[1:], spec.n, spec.m, spec.init,
                           spec.init_instances)


class Trainer(NamedTuple):
  """The pieces of one model's training (pure, jittable functions; vmap any argument).

  `train` is `fit(init(init_key), ...)`. The sweep calls `vmap(init)` and `vmap(fit)`
  separately so that every model of a chunk carries its own optimiser step count, as in
  the engine's first version (same numbers, bit for bit).
  """

  init: Callable[..., TrainState]  # (init key, init scale, lr, weight decay)
  step: Callable[..., tuple[TrainState, jax.Array]]
  fit: Callable[..., TrainOutput]
  evaluate: Callable[[Params, jax.Array, jax.Array], jax.Array]
  train: Callable[..., TrainOutput]


# long: the closures of one model's training, kept together so they read top to bottom
def make_train(spec: SweepSpec, act: Activation, *,
               on_window: Callable[[jax.Array], None] | None = None,
               draw_block_bytes: int = DRAW_BLOCK_BYTES) -> Trainer:
  """Builds the training of one model with `spec`'s static settings and activation `act`.

  Args:
    spec: only its static fields are read (n, m, steps, batch_size, init,
      init_instances, model, data, log_every, eval_size); the swept values come as
      arguments.
    act: the activation (`activations.get(name)`).
    on_window: called with the window index after every full log window, inside the
      compiled program (the sweep reports progress through `jax.debug.callback` here).
    draw_block_bytes: most bytes of uniforms drawn at once.

  Returns:
    A `Trainer`; its `train(init_key, data_key, density, importance [n], lr,
    weight_decay, init_scale=1) -> TrainOutput` is the whole training of one model.
  """
  n, m, B = spec.n, spec.m, spec.batch_size
  family = families.get("model", spec.model)
  opt = families.get("optimizer", spec.optimizer)
  optimizer = lambda lr, weight_decay: opt.make(lr, weight_decay, spec.steps)
  signed = family.signed

  def init(key: jax.Array, init_scale, lr, weight_decay) -> TrainState:
    """Step 1: `W [m, n]` from the init family times `init_scale`, b = 0, and the state
    of the optimiser of THIS point's `lr` and `weight_decay` (an optimiser may keep its
    hyperparameters in its state, as `optax.inject_hyperparams` does)."""
    params = init_params(key, n, m, init=spec.init, instances=spec.init_instances,
                         model=spec.model, scale=init_scale, act=act.fn)
    return TrainState(params, optimizer(lr, weight_decay).init(params))

  def loss_of(params: Params, x: jax.Array, importance: jax.Array) -> jax.Array:
    return family_loss(family, params, x, importance, act.fn, per_example=act.per_example)

  def batch(u, density):
    return data.features(spec.data, u, density, signed=signed)

  def step(state: TrainState, u, density, importance, lr, weight_decay):
    """Steps 2-3: the batch of uniforms `u [n, B]` (`data.features`), one optimiser update."""
    x = batch(u, density)  # [n, B]: batch minor, see loss.family_loss
    loss, grads = jax.value_and_grad(loss_of)(state.params, x, importance)
    updates, opt_state = optimizer(lr, weight_decay).update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss

  def evaluate(params: Params, density, importance) -> jax.Array:
    """Step 5: the loss on the fixed evaluation set (the same for every model)."""
    u_eval = jax.random.uniform(jax.random.key(EVAL_SEED), (n, spec.eval_size))
    return loss_of(params, batch(u_eval, density), importance)

  def fit(state: TrainState, data_key, density, importance, lr, weight_decay) -> TrainOutput:
    """Step 4: every step from `state`, the loss history by window, then `evaluate`."""
    def one_step(state, u):
      return step(state, u, density, importance, lr, weight_decay)

    def advance(state, ts):
      return jax.lax.scan(one_step, state, draw_uniforms(data_key, ts, n, B))

    state, history = scan_steps(spec, advance, state, step_bytes=4 * n * B,
                                block_bytes=draw_block_bytes, on_window=on_window)
    return output(state.params, history, evaluate(state.params, density, importance))

  def train(init_key, data_key, density, importance, lr, weight_decay,
            init_scale=1.0) -> TrainOutput:
    return fit(init(init_key, init_scale, lr, weight_decay), data_key, density, importance,
               lr, weight_decay)

  return Trainer(init, step, fit, evaluate, train)
