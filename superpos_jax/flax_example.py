"""A model family that exists only as a Flax module: the bottleneck with a hidden bias
and a LayerNorm on the hidden layer, `x' = f(Wᵀ LayerNorm(W x + c) + b)`.

The study's bottleneck has no hidden bias and nothing between its two matmuls; TMS's
privileged-basis variants and SoLU's LayerNorm (Elhage et al. 2022, "Softmax Linear
Units") are the nearest relatives. The LayerNorm normalises the m hidden units of each
example (so m = 1 is degenerate: one unit always normalises to its bias). It is written
for the engine's batched form, `xs: [n, B]`, the batch as the minor axis; the engine
draws `W` from the spec's init family (times the init scale α), Flax's own initialisers
give the rest (c = 0, LayerNorm scale 1 and bias 0, b = 0).

    from superpos_jax import flax_example, sweep
    flax_example.register()                 # model="layernorm"
    res = sweep.run(SweepSpec(n=10, m=5, model="layernorm", densities=(1.0, 0.1)))
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from superpos_jax.activations import ActivationFn
from superpos_jax.families import ModelFamily
from superpos_jax.model import register_model

NAME = "layernorm"


class HiddenLayerNormBottleneck(nn.Module):
  """`x' = f(Wᵀ LayerNorm(W x + c) + b)` of columns `xs: [n, B]`.

  Attributes:
    m: hidden dimensions (the engine fills it in from the spec).
  """

  m: int

  @nn.compact
  def __call__(self, xs: jax.Array, act: ActivationFn) -> jax.Array:
    n = xs.shape[0]
    W = self.param("W", nn.initializers.zeros, (self.m, n))  # [m, n], drawn by the engine
    c = self.param("c", nn.initializers.zeros, (self.m,))  # [m] hidden bias
    b = self.param("b", nn.initializers.zeros, (n,))  # [n] output bias
    h = nn.LayerNorm(reduction_axes=0, feature_axes=0)(W @ xs + c[:, None])  # [m, B]
    return act(W.T @ h + b[:, None])


def register(overwrite: bool = True) -> ModelFamily:
  """Registers the module as model family `"layernorm"` (again if already there)."""
  return register_model(NAME, HiddenLayerNormBottleneck,
                        "x' = f(Wᵀ LayerNorm(W x + c) + b): hidden bias and LayerNorm (Flax)",
                        overwrite=overwrite)


def reference_forward(W: jax.Array, c: jax.Array, scale: jax.Array, bias: jax.Array,
                      b: jax.Array, x: jax.Array, act: ActivationFn,
                      eps: float = 1e-6) -> jax.Array:
  """The same model for one example `x: [n]`, written out without Flax (for tests)."""
  h = W @ x + c
  h = (h - jnp.mean(h)) / jnp.sqrt(jnp.var(h) + eps) * scale + bias
  return act(W.T @ h + b)
