"""The model families, one example at a time (SCIENCE.md, "Beyond the study").

  bottleneck   x' = f(WᵀW x + b)            the study's toy model (Elhage et al. 2022)
  privileged   h = f(W x), x' = f(Wᵀ h + b)  TMS, "Superposition in a privileged basis"
  abs          h = f(W₁ x), y = ReLU(W₂ h + b), target |x|   TMS, "Computation in
               superposition": untied `W₁ = Params.W [m, n]`, `W₂ = Params.W2 [n, m]`

`MODELS` is the registry (names in `families.MODEL_FAMILIES`); `loss.model_batch_loss` is
the engine's batched form of each.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.inits import init_std


class Params(NamedTuple):
  W: jax.Array  # [m, n]; column i is feature i's direction in the hidden space (W₁ of abs)
  b: jax.Array  # [n]
  W2: jax.Array | None = None  # [n, m] untied decoder of "abs"; None (no leaf) otherwise


class ModelFamily(NamedTuple):
  """A model family: `forward(params, x [n], act) -> [n]`, the target it is trained to
  output, whether its inputs are signed (in [-1, 1]) and whether it has a decoder `W2`."""

  forward: Callable[[Params, jax.Array, ActivationFn], jax.Array]
  target: Callable[[jax.Array], jax.Array]
  signed: bool = False
  untied: bool = False


def _normal(key: jax.Array, shape: tuple[int, int], std: float) -> jax.Array:
  """Untruncated normal of `std` through `variance_scaling`, as PyTorch's `xavier_normal_`
  (`jax.nn.initializers.glorot_normal` truncates)."""
  # variance_scaling's fan_avg variance is scale * 2 / (fan_in + fan_out); pick scale.
  scale = std**2 * sum(shape) / 2.0
  w_init = jax.nn.initializers.variance_scaling(scale, "fan_avg", "normal", in_axis=1, out_axis=0)
  return w_init(key, shape, jnp.float32)


def init_params(key: jax.Array, n: int, m: int, *, init: str = "xavier_normal",
                instances: int = 20, model: str = "bottleneck",
                scale: jax.Array | float = 1.0) -> Params:
  """`W [m, n] = α · N(0, std²)` with `std = inits.init_std`, zero bias.

  Args:
    key: the init key (split once more only for an untied model's `W2`).
    scale: the init scale α (a grid axis; 1 keeps the family's draw bit for bit).
    model: a name of `MODELS`; "abs" also draws `W2 [n, m]` from the same std.
  """
  std = init_std(n, m, init, instances)
  b = jnp.zeros((n,), jnp.float32)
  if not MODELS[model].untied:
    return Params(W=scale * _normal(key, (m, n), std), b=b)
  k1, k2 = jax.random.split(key)
  return Params(W=scale * _normal(k1, (m, n), std), b=b, W2=scale * _normal(k2, (n, m), std))


def forward(params: Params, x: jax.Array, act: ActivationFn) -> jax.Array:
  """Reconstruction `x' = f(Wᵀ W x + b)` of one example `x: [n]` (the bottleneck)."""
  h = params.W @ x  # [m]
  return act(params.W.T @ h + params.b)


def forward_privileged(params: Params, x: jax.Array, act: ActivationFn) -> jax.Array:
  """`x' = f(Wᵀ f(W x) + b)`: f on the hidden layer makes the neurons a real basis."""
  return act(params.W.T @ act(params.W @ x) + params.b)


def forward_abs(params: Params, x: jax.Array, act: ActivationFn) -> jax.Array:
  """`y = ReLU(W₂ f(W₁ x) + b)`, trained towards `|x|`."""
  return jax.nn.relu(params.W2 @ act(params.W @ x) + params.b)


MODELS: dict[str, ModelFamily] = {
    "bottleneck": ModelFamily(forward, lambda x: x),
    "privileged": ModelFamily(forward_privileged, lambda x: x),
    "abs": ModelFamily(forward_abs, jnp.abs, signed=True, untied=True),
}
