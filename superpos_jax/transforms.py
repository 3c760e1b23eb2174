"""Optax pieces of the registered optimisers that optax does not ship.

`liu_adamw` is the optimiser of Liu, Liu & Gore 2025 ("Superposition Yields Robust
Neural Scaling", code: liuyz0/SuperpositionScaling, `exp/adamw.py` and `exp/exp-10.py`):
Adam, a decoupled weight decay γ on `W` only that pulls each feature's norm towards 1
when γ < 0, and a linear warm-up then cosine decay of the learning rate to 5 % of its
peak. Built from optax's own `scale_by_adam`, `masked` and schedules; the only new
piece is the signed decay (`add_signed_feature_decay`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

# Their get_lr: 2,000 warm-up steps of 20,000 (exp-10), decay to 5 % of the peak.
WARMUP_FRACTION = 0.1
END_FRACTION = 0.05
# Their AdamW adds Adam's eps to each row norm before dividing by it.
NORM_EPS = 1e-8


def add_signed_feature_decay(weight_decay: jax.Array, eps: float = NORM_EPS,
                             mask: Any = None) -> optax.GradientTransformation:
  """Decoupled weight decay whose sign chooses its target (their `adamw.py`).

  Adds to each update `γ·W` for γ >= 0 (plain decay towards 0) and `-γ·W_i·(1 - 1/‖W_i‖)`
  for γ < 0, where `W_i` is feature i's column of `W [m, n]` (their rows of `W [n, m]`):
  after the learning-rate scaling, `W_i += lr·γ·W_i·(1 - 1/‖W_i‖)`, a pull of every
  feature's norm towards 1 (strong superposition). Chain it after `scale_by_adam` and
  before the (negative) learning-rate scaling, as `optax.add_decayed_weights` is.

  Args:
    weight_decay: γ, a scalar (may be a traced, swept array).
    eps: added to each feature norm before dividing by it.
    mask: which leaves decay (a pytree of bools or a function of the params), as in
      `optax.masked`; None: all, each a matrix with features as columns.
  """
  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("add_signed_feature_decay needs the params")

    def decay(u, p):
      norms = jnp.sqrt(jnp.sum(p * p, axis=0, keepdims=True)) + eps
      towards_one = -weight_decay * p * (1.0 - 1.0 / norms)
      return u + jnp.where(weight_decay >= 0, weight_decay * p, towards_one)

    return jax.tree.map(decay, updates, params), state

  tx = optax.GradientTransformation(init_fn, update_fn)
  return tx if mask is None else optax.masked(tx, mask)


def decay_mask(params) -> Any:
  """True for the top-level leaf `W` (features as columns) and no other: their optimiser
  decays `W` and leaves the bias undecayed (`weight_decay` 0 for `b` in exp-10)."""
  def is_w(path, _):
    return len(path) == 1 and getattr(path[0], "name", getattr(path[0], "key", None)) == "W"
  return jax.tree_util.tree_map_with_path(is_w, params)


def warmup_cosine(steps: int) -> optax.Schedule:
  """Their learning-rate factor at update `count` (0-based): linear warm-up over
  `WARMUP_FRACTION` of the steps, then cosine to `END_FRACTION`, peak 1.

  Their `get_lr(step)` evaluates at `step + 1`, so the first update already has
  `1/warmup` of the peak and the last one exactly the end value; optax's schedule at
  `count + 1` is the same function.
  """
  warmup = int(round(WARMUP_FRACTION * steps))
  if warmup < 1:  # too short to warm up: cosine only
    schedule = optax.cosine_decay_schedule(1.0, max(steps, 1), alpha=END_FRACTION)
  else:
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max(steps, warmup + 1),
                                                  END_FRACTION)
  return lambda count: schedule(count + 1)


def liu_adamw(lr: jax.Array, weight_decay: jax.Array, *, steps: int) -> optax.GradientTransformation:
  """Liu et al.'s AdamW: Adam (PyTorch's defaults), the signed decay on `W` only, the
  learning rate `lr · warmup_cosine(steps)`.

  Args:
    lr: the peak learning rate (theirs 1e-2), a swept array.
    weight_decay: γ in [-1, 1] in their sweeps; negative pulls feature norms towards 1.
    steps: the training's length (the schedule's).
  """
  factor = warmup_cosine(steps)
  return optax.chain(
      optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
      add_signed_feature_decay(weight_decay, mask=decay_mask),
      optax.scale_by_learning_rate(lambda count: lr * factor(count)))
