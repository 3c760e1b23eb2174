"""Activation registry: the single source of truth for activation names.

Every activation maps pre-activations with the features on axis 0 -- one example
`z: [n]`, or a batch of examples as columns `z: [n, B]` -- to the same shape. Most are
elementwise; SoLU normalises over the n features of each example (axis 0), which is why
the registry works on feature vectors rather than scalars. An activation written for one
example only (say with `axis=-1`) registers with `per_example=True` and the engine vmaps
it over the examples instead (correct, but measured 2-5x slower for SoLU).

A user adds an activation with::

    from superpos_jax import activations
    activations.register("softplus", jax.nn.softplus, "log(1 + e^x)")

after which the name works everywhere: sweep specs, CLI flags (``--activations``), plots.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

ActivationFn = Callable[[jax.Array], jax.Array]  # z: [n, ...] -> same shape, features on axis 0


@dataclasses.dataclass(frozen=True)
class Activation:
  """A named activation: `fn` maps `z: [n, ...]` (features on axis 0) to the same shape."""

  name: str
  fn: ActivationFn
  description: str
  per_example: bool = False  # fn takes one example `[n]` only; the engine vmaps it
  version: str | None = None  # what the code digest cannot see (provenance.code_digest)


class UnknownActivationError(ValueError):
  """Raised for a name that is not in the registry."""


_REGISTRY: dict[str, Activation] = {}


def register(name: str, fn: ActivationFn, description: str, *, per_example: bool = False,
             version: str | None = None, overwrite: bool = False) -> Activation:
  """Adds an activation to the registry.

  Args:
    name: lower-case identifier used in specs, CLI flags and plot labels.
    fn: pure function of pre-activations `z: [n, ...]`, features on axis 0, examples
      on any trailing axes (the engine calls it on `[n, B]` columns); elementwise
      functions qualify as they are.
    description: one line shown by `--help` and the README.
    per_example: `fn` handles one example `z: [n]` only (e.g. it reduces over
      `axis=-1`); the engine then vmaps it over the examples, which is slower.
    version: a label of what the code digest cannot see (code that reads a file or calls
      a C library); changing it changes the identity of results trained with it.
    overwrite: replace an existing entry of the same name instead of raising.

  Returns:
    The registered `Activation`.
  """
  if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() \
      or name != name.lower():
    raise ValueError(f"activation name must be a lower-case identifier, got {name!r}")
  if name in _REGISTRY and not overwrite:
    raise ValueError(f"activation {name!r} is already registered (pass overwrite=True to replace it)")
  if not callable(fn):
    raise ValueError(f"activation {name!r}: expected a function, got {fn!r}")
  if not (isinstance(description, str) and description.strip() and "\n" not in description.strip()):
    raise ValueError(f"activation {name!r}: description must be one line of text, got {description!r}")
  for flag, value in (("per_example", per_example), ("overwrite", overwrite)):
    if not isinstance(value, bool):
      raise ValueError(f"activation {name!r}: {flag} must be True or False, got {value!r}")
  if version is not None and not isinstance(version, str):
    raise ValueError(f"activation {name!r}: version must be a string or None, got {version!r}")
  act = Activation(name=name, fn=fn, description=description, per_example=per_example,
                   version=version)
  _REGISTRY[name] = act
  return act


def get(name: str) -> Activation:
  """Looks an activation up by name; an unknown name lists the valid ones."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise UnknownActivationError(
        f"unknown activation {name!r}; valid names: {', '.join(names())}") from None


def names() -> tuple[str, ...]:
  """All registered names, in registration order."""
  return tuple(_REGISTRY)


def describe() -> str:
  """`name: description` lines, for CLI help and docs."""
  return "\n".join(f"{a.name}: {a.description}" for a in _REGISTRY.values())


def solu(z: jax.Array) -> jax.Array:
  """SoLU(z) = z * softmax(z) over the n features (axis 0) of each example, no LayerNorm.

  Elhage et al. 2022, "Softmax Linear Units". Written on axis 0 so that the engine applies
  it to a whole `[n, B]` batch: vmapping a per-example version over the columns compiled
  to code 2-5x slower (measured on the 2-core CPU, n=2..200).
  """
  return z * jax.nn.softmax(z, axis=0)


def make_stretched_sigmoid(eps: float) -> ActivationFn:
  """Sigmoid rescaled to the open interval (-eps, 1 + eps).

  The blog's future-work suggestion: a plain sigmoid can only approach 0 and 1, the ends
  of the data range, with unbounded pre-activations.
  """

  def stretched_sigmoid(z: jax.Array) -> jax.Array:
    return (1.0 + 2.0 * eps) * jax.nn.sigmoid(z) - eps

  return stretched_sigmoid


register("linear", lambda z: z, "identity (the linear baseline)")
register("relu", jax.nn.relu, "max(0, x)")
register("gelu", lambda z: jax.nn.gelu(z, approximate=False),
         "exact GELU x*Phi(x) with erf, as PyTorch's default")
register("gelu_tanh", lambda z: jax.nn.gelu(z, approximate=True),
         "tanh approximation of GELU (jax.nn.gelu's default)")
register("silu", jax.nn.silu, "x*sigmoid(x), a.k.a. swish")
register("sigmoid", jax.nn.sigmoid, "1/(1+e^-x), range (0, 1)")
register("tanh", jnp.tanh, "tanh(x), range (-1, 1)")
register("solu", solu, "x*softmax(x) over the n outputs of an example (no LayerNorm)")
# The blog's future-work suggestion at three stretches ε (`stretched_sigmoid.py` trains
# them); "sigmoid_stretched" is ε = 0.1.
STRETCHES = {"sigmoid_stretched_0p01": 0.01, "sigmoid_stretched": 0.1, "sigmoid_stretched_0p3": 0.3}
for _name, _eps in STRETCHES.items():
  register(_name, make_stretched_sigmoid(_eps),
           f"sigmoid stretched to ({-_eps:g}, {1 + _eps:g}), the blog's future-work suggestion")
