"""Hand-written references the tests hold the engine's loss against: the study's loss of
ONE example written out (`x' = f(WᵀW x + b)`, `Σ_i I_i (x_i - x'_i)²`), its mean over a
batch, and the engine's loss of a registered family by name."""

import jax
import jax.numpy as jnp

from superpos_jax import families
from superpos_jax.loss import family_loss


def example_loss(params, x, importance, act):
  """`Σ_i I_i (x_i - x'_i)²` of the bottleneck for one example `x: [n]` (act of `[n]`)."""
  out = act(params.W.T @ (params.W @ x) + params.b)
  return jnp.sum(importance * (x - out) ** 2)


def loss_fn(params, xs, importance, act, *, batch_axis=0):
  """Mean of `example_loss` over a batch (`xs: [B, n]`, or `[n, B]` with batch_axis=1)."""
  per_example = jax.vmap(lambda x: example_loss(params, x, importance, act), in_axes=batch_axis)(xs)
  return jnp.mean(per_example)


def model_batch_loss(name, params, xs, importance, act, *, per_example=False):
  """The engine's loss of registered model family `name` on columns `xs: [n, B]`."""
  return family_loss(families.get("model", name), params, xs, importance, act,
                     per_example=per_example)


def batch_loss(params, xs, importance, act, *, per_example=False):
  """The engine's loss of the bottleneck on columns `xs: [n, B]`."""
  return model_batch_loss("bottleneck", params, xs, importance, act, per_example=per_example)
