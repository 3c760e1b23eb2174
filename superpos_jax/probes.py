"""What a trained model outputs for one feature alone (jax, pure, no I/O).

The computation experiment asks whether a feature's output reproduces its target, which
the weights alone cannot say (the answer depends on the activation). `isolated_outputs`
feeds `x = t·e_i` (only feature i present, value t) through the trained model and reads
output i; `summary_beyond.computed_from_outputs` turns that into a count, numpy only.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import activations, results, summary_beyond
from superpos_jax.model import get_model, named_params, params_from_named


def isolated_output(params, act: activations.ActivationFn, model: str,
                    values: jax.Array) -> jax.Array:
  """`[n, T]`: output i of `model` when only feature i is present with value `values[t]`."""
  n = named_params(params)["b"].shape[0]
  forward = get_model(model).forward  # the family's one-example form

  def one(i, t):
    return forward(params, t * jax.nn.one_hot(i, n), act)[i]

  return jax.vmap(lambda i: jax.vmap(lambda t: one(i, t))(values))(jnp.arange(n))


def isolated_outputs(named: dict[str, np.ndarray], acts: Sequence[str], model: str,
                     values: np.ndarray) -> np.ndarray:
  """`isolated_output` of every model of a grid whose first axis is the activation.

  Args:
    named: the models' final params by name (`results.named_params`: `W [A, ..., m, n]`,
      `b [A, ..., n]`, and any other of the family's), rebuilt as the family's own params.
    acts: the A activation names.
    model: the model family.
    values: `[T]` feature values to probe.

  Returns:
    `[A, ..., n, T]` outputs (numpy).
  """
  out = []
  W, b = named["W"], named["b"]
  lead, tail = W.shape[1:-2], len(W.shape[1:-2])
  for a, name in enumerate(acts):
    fn = activations.get(name).fn
    flat = {k: jnp.reshape(v[a], (-1,) + v.shape[1 + tail:]) for k, v in named.items()}
    params = params_from_named(model, flat, fn)
    probe = jax.jit(jax.vmap(lambda p: isolated_output(p, fn, model, jnp.asarray(values))))
    out.append(np.asarray(probe(params)).reshape(*lead, b.shape[-1], len(values)))
  return np.stack(out)


def best_seed_outputs(result: results.SweepResult,
                      values: np.ndarray = summary_beyond.PROBE_VALUES) -> np.ndarray:
  """`[A, D, n, T]`: `isolated_outputs` of `summary_beyond.best_grid(result)`."""
  red = summary_beyond.best_grid(result)
  return isolated_outputs(results.named_params(red), [str(a) for a in red.coords["activation"]],
                          result.spec.model, values)
