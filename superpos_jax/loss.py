"""Importance-weighted loss of a model family (derived from its batched form).

Convention: the loss of one example is `Σ_i I_i (target(x)_i - out_i)²` (summed over
features, as in SCIENCE.md and the blog), and a batch loss is its mean over examples. TMS
also divides by n; with Adam(W) that constant factor does not change the updates (up to
Adam's eps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.families import ModelFamily
from superpos_jax.model import Params, get_model


def columns(act: ActivationFn, per_example: bool = False) -> ActivationFn:
  """`act` on columns `z: [k, B]` (vmapped over them if it takes one example only)."""
  return jax.vmap(act, in_axes=1, out_axes=1) if per_example else act


def family_loss(family: ModelFamily, params, xs: jax.Array, importance: jax.Array,
                act: ActivationFn, *, per_example: bool = False) -> jax.Array:
  """Mean over the columns of `xs: [n, B]` of `Σ_i I_i (target(x)_i - out_i)²`.

  Args:
    family: the model family; its batched `apply` keeps the batch the minor axis of
      every intermediate (the engine's hot path).
    importance: `[n]`.
    per_example: `act` takes one example `[n]` only, so it is vmapped over the
      columns; otherwise (every registered built-in) it takes `[n, B]` directly.
  """
  err = family.target(xs) - family.apply(params, xs, columns(act, per_example))
  return jnp.vdot(importance[:, None] * err, err) / xs.shape[1]


def model_batch_loss(model: str, params, xs: jax.Array, importance: jax.Array,
                     act: ActivationFn, *, per_example: bool = False) -> jax.Array:
  """`family_loss` of the registered model family `model`."""
  return family_loss(get_model(model), params, xs, importance, act, per_example=per_example)


def batch_loss(params: Params, xs: jax.Array, importance: jax.Array, act: ActivationFn,
               *, per_example: bool = False) -> jax.Array:
  """The bottleneck's loss of examples stored as columns, `xs: [n, B]` (`model.bottleneck`:
  two matmuls, the batch the minor axis). Same value as `loss_fn(..., batch_axis=1)`."""
  return model_batch_loss("bottleneck", params, xs, importance, act, per_example=per_example)


def model_example_loss(model: str, params, x: jax.Array, importance: jax.Array,
                       act: ActivationFn) -> jax.Array:
  """`Σ_i I_i (target(x)_i - out_i)²` of model family `model` for one example `x: [n]`
  (the batched loss of one column; `act` takes one example `[n]`)."""
  return model_batch_loss(model, params, x[:, None], importance, act, per_example=True)


def example_loss(params: Params, x: jax.Array, importance: jax.Array, act: ActivationFn) -> jax.Array:
  """`Σ_i I_i (x_i - x'_i)²` for one example `x: [n]`, importance `[n]` (bottleneck)."""
  return model_example_loss("bottleneck", params, x, importance, act)


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
