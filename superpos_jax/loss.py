"""Importance-weighted reconstruction loss.

Convention: the loss of one example is `Σ_i I_i (x_i - x'_i)²` (summed over features, as
in SCIENCE.md and the blog), and a batch loss is its mean over examples. TMS also divides
by n; with Adam(W) that constant factor does not change the updates (up to Adam's eps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.model import MODELS, Params, forward


def example_loss(params: Params, x: jax.Array, importance: jax.Array, act: ActivationFn) -> jax.Array:
  """`Σ_i I_i (x_i - x'_i)²` for one example `x: [n]`, importance `[n]` (bottleneck)."""
  err = x - forward(params, x, act)
  return jnp.sum(importance * err * err)


def model_example_loss(model: str, params: Params, x: jax.Array, importance: jax.Array,
                       act: ActivationFn) -> jax.Array:
  """`Σ_i I_i (target(x)_i - out_i)²` of model family `model` for one example `x: [n]`."""
  family = MODELS[model]
  err = family.target(x) - family.forward(params, x, act)
  return jnp.sum(importance * err * err)


def loss_fn(params: Params, xs: jax.Array, importance: jax.Array, act: ActivationFn,
            *, batch_axis: int = 0) -> jax.Array:
  """Mean of `example_loss` over a batch.

  Args:
    params: one model.
    xs: examples, `[B, n]` (or `[n, B]` with `batch_axis=1`).
    importance: `[n]`.
    act: activation of one example.
    batch_axis: the axis of `xs` that indexes examples (1 for `[n, B]` columns; the
      engine itself uses the equivalent `batch_loss`).
  """
  per_example = jax.vmap(lambda x: example_loss(params, x, importance, act), in_axes=batch_axis)(xs)
  return jnp.mean(per_example)


def batch_loss(params: Params, xs: jax.Array, importance: jax.Array, act: ActivationFn,
               *, per_example: bool = False) -> jax.Array:
  """`loss_fn` for examples stored as columns, `xs: [n, B]`, written as two matmuls.

  Same value as `loss_fn(params, xs, importance, act, batch_axis=1)` (a test checks it),
  but the batch stays the minor axis of every intermediate and the products are plain
  `[m, n] @ [n, B]` matmuls: the engine's hot path.

  Args:
    per_example: `act` takes one example `[n]` only, so it is vmapped over the
      columns; otherwise (every registered built-in) it takes `[n, B]` directly.
  """
  W, b = params.W, params.b
  h = W @ xs  # [m, B]
  # The bias rides in the decoder matmul, as a column against a row of ones, so that its
  # gradient is a matmul too instead of a sum over the batch: with XLA CPU's YNNPACK
  # reductions off (they leak memory on several devices, see superpos_jax/cli.py) this
  # made n=2 training 1.3x faster (308k -> 404k model-steps/s, 7 activations).
  decoder = jnp.concatenate([W.T, b[:, None]], axis=1)  # [n, m + 1]
  z = decoder @ jnp.concatenate([h, jnp.ones((1, xs.shape[1]), h.dtype)], axis=0)  # [n, B]
  out = jax.vmap(act, in_axes=1, out_axes=1)(z) if per_example else act(z)
  err = xs - out
  return jnp.vdot(importance[:, None] * err, err) / xs.shape[1]


def _apply(act: ActivationFn, z: jax.Array, per_example: bool) -> jax.Array:
  """`act` on columns `z: [k, B]` (vmapped over them if it takes one example only)."""
  return jax.vmap(act, in_axes=1, out_axes=1)(z) if per_example else act(z)


def model_batch_loss(model: str, params: Params, xs: jax.Array, importance: jax.Array,
                     act: ActivationFn, *, per_example: bool = False) -> jax.Array:
  """Mean of `model_example_loss` over the columns of `xs: [n, B]`.

  The bottleneck is `batch_loss` itself (the engine's hot path, unchanged bit for bit);
  the other families are written here as plain matmuls over the batch.
  """
  if model == "bottleneck":
    return batch_loss(params, xs, importance, act, per_example=per_example)
  h = _apply(act, params.W @ xs, per_example)  # [m, B]
  if model == "privileged":
    out, target = _apply(act, params.W.T @ h + params.b[:, None], per_example), xs
  else:  # "abs"
    out, target = jax.nn.relu(params.W2 @ h + params.b[:, None]), MODELS[model].target(xs)
  err = target - out
  return jnp.vdot(importance[:, None] * err, err) / xs.shape[1]
