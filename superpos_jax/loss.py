"""The loss: importance-weighted squared error of a model family, derived from its
batched form (`family_loss`, the one loss the engine trains with).

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
