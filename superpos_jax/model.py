"""The model families, each defined ONCE in batched form (SCIENCE.md, "Beyond the study").

  bottleneck   x' = f(WᵀW x + b)            the study's toy model (Elhage et al. 2022)
  bottleneck_normal_bias   the same, b₀ ~ N(0, 1)   Liu, Liu & Gore 2025's init
  privileged   h = f(W x), x' = f(Wᵀ h + b)  TMS, "Superposition in a privileged basis"
  abs          h = f(W₁ x), y = ReLU(W₂ h + b), target |x|   TMS, "Computation in
               superposition": untied `W₁ = Params.W [m, n]`, `W₂ = Params.W2 [n, m]`

A family is `apply(params, xs [n, B], act) -> [n, B]` with the batch as the minor axis
(the engine's hot path), its target, input sign, init and parameter names
(`families.ModelFamily`); the one-example form (`ModelFamily.forward`), the loss
(`loss.family_loss`) and the metrics' input (`W`) are derived from it.
`register_model` adds one, as plain functions or as a `flax.linen.Module` class
(`flax_example.py` is one; README, "Using it", registers another in a few lines). The
built-ins stay plain functions: no Flax in the hot path's tracing (see README for the
measured comparison, `benchmarks/flax_vs_plain.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from superpos_jax import families
from superpos_jax.activations import ActivationFn
from superpos_jax.families import ModelFamily
from superpos_jax.gridspec import LayoutFacts
from superpos_jax.inits import init_std


class Params(NamedTuple):
  W: jax.Array  # [m, n]; column i is feature i's direction in the hidden space (W₁ of abs)
  b: jax.Array  # [n]
  W2: jax.Array | None = None  # [n, m] untied decoder of "abs"; None (no leaf) otherwise


def _normal(key: jax.Array, shape: tuple[int, int], std: float) -> jax.Array:
  """Untruncated normal of `std` through `variance_scaling`, as PyTorch's `xavier_normal_`
  (`jax.nn.initializers.glorot_normal` truncates)."""
  # variance_scaling's fan_avg variance is scale * 2 / (fan_in + fan_out); pick scale.
  scale = std**2 * sum(shape) / 2.0
  w_init = jax.nn.initializers.variance_scaling(scale, "fan_avg", "normal", in_axis=1, out_axis=0)
  return w_init(key, shape, jnp.float32)


def _path_name(path) -> str:
  """`W`, `W2`, `LayerNorm_0.scale`: a leaf's name from its key path."""
  parts = []
  for k in path:
    for attr in ("name", "key", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return ".".join(parts)


def named_params(params: Any) -> dict[str, jax.Array]:
  """Every leaf of a params pytree by name (`Params` fields, or a Flax module's nested
  names joined with "."), in the pytree's order."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {_path_name(path): leaf for path, leaf in leaves}


def replace_params(params: Any, values: dict[str, jax.Array]) -> Any:
  """`params` with the leaves named in `values` replaced."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: values.get(_path_name(path), leaf), params)


def params_from_named(model: str, named: dict[str, Any], act: ActivationFn | None = None) -> Any:
  """Model family `model`'s params with the leaves given by name (`named_params`' names,
  e.g. a result's `results.named_params`): the family's own structure, whatever its
  parameters (any leading axes of the arrays are kept, for `jax.vmap`)."""
  family = families.get("model", model)
  n, m = named["b"].shape[-1], named["W"].shape[-2]
  template = jax.eval_shape(lambda k: family.init(k, n, m, families.identity if act is None else act),
                            jax.random.key(0))
  missing = sorted(set(named_params(template)) - set(named))
  if missing:
    raise KeyError(f"model family {model!r} needs params {missing}, not given")
  return replace_params(template, named)


def init_params(key: jax.Array, n: int, m: int, *, init: str = "xavier_normal",
                instances: int = 20, model: str = "bottleneck",
                scale: jax.Array | float = 1.0, act: ActivationFn | None = None) -> Any:
  """The family's params, its `draw` leaves `α · N(0, std²)` with `std = inits.init_std`.

  Args:
    key: the init key: the key of the one drawn leaf (`W`), or split once per drawn leaf
      (`W`, `W2` of "abs"); the family's own init gets `fold_in(key, len(draw))`.
    scale: the init scale α (a grid axis; 1 keeps the family's draw bit for bit).
    model: a registered model family.
    act: the activation the family's own init may trace its forward with (a Flax
      module's `init` does); the identity if None.
  """
  family = families.get("model", model)
  std = init_std(n, m, init, instances)
  params = family.init(jax.random.fold_in(key, len(family.draw)), n, m,
                       families.identity if act is None else act)
  keys = [key] if len(family.draw) == 1 else list(jax.random.split(key, len(family.draw)))
  shapes = {k: v.shape for k, v in named_params(params).items()}
  return replace_params(params, {name: scale * _normal(k, shapes[name], std)
                                 for name, k in zip(family.draw, keys)})


def bottleneck(params: Params, xs: jax.Array, act: ActivationFn) -> jax.Array:
  """`x' = f(Wᵀ W x + b)` of columns `xs [n, B]`: two plain matmuls, the engine's hot path."""
  W, b = params.W, params.b
  h = W @ xs  # [m, B]
  # The bias rides in the decoder matmul, as a column against a row of ones, so that its
  # gradient is a matmul too instead of a sum over the batch: with XLA CPU's YNNPACK
  # reductions off (they leak memory on several devices, see superpos_jax/cli.py) this
  # made n=2 training 1.3x faster (308k -> 404k model-steps/s, 7 activations).
  decoder = jnp.concatenate([W.T, b[:, None]], axis=1)  # [n, m + 1]
  return act(decoder @ jnp.concatenate([h, jnp.ones((1, xs.shape[1]), h.dtype)], axis=0))


def privileged(params: Params, xs: jax.Array, act: ActivationFn) -> jax.Array:
  """`x' = f(Wᵀ f(W x) + b)`: f on the hidden layer makes the neurons a real basis."""
  return act(params.W.T @ act(params.W @ xs) + params.b[:, None])


def abs_model(params: Params, xs: jax.Array, act: ActivationFn) -> jax.Array:
  """`y = ReLU(W₂ f(W₁ x) + b)`, trained towards `|x|`."""
  return jax.nn.relu(params.W2 @ act(params.W @ xs) + params.b[:, None])


def tied_init(key: jax.Array, n: int, m: int, act: ActivationFn) -> Params:
  """`W [m, n]` (drawn by the engine) and a zero bias `b [n]`."""
  del key, act
  return Params(W=jnp.zeros((m, n), jnp.float32), b=jnp.zeros((n,), jnp.float32))


def normal_bias_init(key: jax.Array, n: int, m: int, act: ActivationFn) -> Params:
  """`tied_init` with the bias drawn `b [n] ~ N(0, 1)` (Liu et al. 2025's `torch.randn(n)`)."""
  del act
  return Params(W=jnp.zeros((m, n), jnp.float32), b=jax.random.normal(key, (n,), jnp.float32))


def untied_init(key: jax.Array, n: int, m: int, act: ActivationFn) -> Params:
  """`tied_init` plus the decoder `W2 [n, m]` (drawn too)."""
  return tied_init(key, n, m, act)._replace(W2=jnp.zeros((n, m), jnp.float32))


def _is_flax_module_class(obj) -> bool:
  linen = sys.modules.get("flax.linen")
  return linen is not None and isinstance(obj, type) and issubclass(obj, linen.Module)


def _module_functions(cls) -> tuple[Callable, Callable]:
  """`(apply, init)` of a `flax.linen.Module` class called as `module(xs [n, B], act)`,
  built with those of its fields `n`, `m` that it declares."""
  from flax.core import unfreeze
  sizes = {f.name for f in dataclasses.fields(cls)} & {"n", "m"}

  def make(n, m):
    return cls(**{k: v for k, v in (("n", n), ("m", m)) if k in sizes})

  def apply(params, xs, act):
    return make(xs.shape[0], named_params(params)["W"].shape[0]).apply({"params": params}, xs, act)

  def init(key, n, m, act):
    variables = make(n, m).init(key, jnp.zeros((n, 1), jnp.float32), act)
    return unfreeze(variables["params"])

  return apply, init


def register_model(name: str, definition: Callable | type, description: str, *,
                   init: Callable | None = None, draw: tuple[str, ...] = ("W",),
                   target: Callable | None = None, signed: bool = False, wide: bool = False,
                   version: str | None = None, overwrite: bool = False) -> ModelFamily:
  """Adds a model family; its name then works in `SweepSpec(model=...)`, `--model`,
  result metadata and plots.

  Args:
    name: lower-case identifier.
    definition: the batched forward `apply(params, xs [n, B], act) -> [n, B]`, or a
      `flax.linen.Module` class (fields `n` and/or `m` are filled in) whose
      `__call__(xs [n, B], act)` returns `[n, B]`; its params must include `W [m, n]`
      and `b [n]` (what metrics and plots read), all float32.
    description: one line for `--help` and result metadata.
    init: `init(key, n, m, act) -> params` for a plain `apply` (default: `Params` with
      zero `W [m, n]` and `b [n]`); a module's own `init` otherwise.
    draw: the params drawn by the init family times the init scale α.
    target: what the model learns to output for inputs `xs` (default: `xs`).
    signed: inputs in [-1, 1) instead of [0, 1).
    wide: m may exceed n.
    version: a label of what the code digest cannot see (code that reads a file or
      calls a C library); changing it changes the identity of results trained with it.
    overwrite: replace a family of the same name (a program compiled for the old one is
      never reused: the program cache holds the entry itself).

  Returns:
    The registered `families.ModelFamily`.
  """
  module = None
  if _is_flax_module_class(definition):
    if init is not None:
      raise families.RegistryError(f"model family {name!r}: a Flax module brings its own init")
    module = definition
    definition, init = _module_functions(definition)
  elif not callable(definition):
    raise families.RegistryError(f"model family {name!r}: expected an apply function or a "
                                 f"flax.linen.Module class, got {definition!r}")
  family = ModelFamily(name=name, description=description, apply=definition,
                       init=tied_init if init is None else init,
                       draw=tuple(draw) if isinstance(draw, (tuple, list)) else draw,
                       target=target, signed=signed, wide=wide, module=module, version=version)
  return families.add("model", family, overwrite=overwrite)


def get_model(name: str) -> ModelFamily:
  """The registered model family `name`."""
  return families.get("model", name)


def forward(params: Params, x: jax.Array, act: ActivationFn) -> jax.Array:
  """Reconstruction `x' = f(Wᵀ W x + b)` of one example `x: [n]` (the bottleneck's
  derived one-example form)."""
  return get_model("bottleneck").forward(params, x, act)


# What one model of a chunk keeps alive (the plan's memory estimate, calibrated against
# XLA's buffer assignment, tests/test_layout.py): during a step, in units of one [n, B]
# float32 array; during the evaluation, of one [n, eval_size] array (input,
# pre-activation, output, error).
STEP_LIVE_ARRAYS, EVAL_LIVE_ARRAYS = 12, 4
# Large models (n=200) overflow the cache even alone; there 2-4 models per chunk still pay,
# because the batched matmuls amortise their per-call overhead (measured at n=200, m=20:
# 1 model per chunk 961 model-steps/s, 2: 1,764, 4: 1,739, 8: 1,598).
MIN_CHUNK = 4


def layout_facts(spec) -> LayoutFacts:
  """What a plan reads of a toy grid (`SweepSpec.layout_facts`, `gridspec.GridSpec`): an
  activation's points, the seeds that share their uniforms (shared random numbers), and
  one model's bytes: its step, its evaluation, its state and outputs."""
  n, m, B, E = spec.n, spec.m, spec.batch_size, spec.eval_size
  state, params = state_bytes(*families.entries(spec)[1:], n, m, spec.init, spec.init_instances)
  A = len(spec.activations)
  return LayoutFacts(
      groups=A, points=spec.num_models // A,
      shared_seeds=len(spec.seeds) if spec.rng == "shared" else 0,
      cache_bytes=4 * (n + m) * B, min_chunk=MIN_CHUNK,
      working_bytes=max(4 * STEP_LIVE_ARRAYS * (n + m) * B, 4 * EVAL_LIVE_ARRAYS * n * E),
      once_bytes=8 * n * E,  # the evaluation set's uniforms, drawn once
      state_bytes=state + params + 4 * (len(spec.history_steps()) + 3 * n + 8))


@functools.lru_cache(maxsize=64)
def state_bytes(model: ModelFamily, data_family, opt, n: int, m: int, init: str,
                instances: int) -> tuple[int, int]:
  """`(training state, params)` bytes of one model: what its family's init and its
  optimiser's state hold, read off their shapes (`jax.eval_shape`, nothing computed), so
  that a family with more parameters or an optimiser with more state is counted as it
  is. The data family is part of the key only, as `families.entries` gives it."""
  del data_family
  nbytes = lambda tree: sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize
                            for x in jax.tree.leaves(tree))

  def fresh(key):
    params = init_params(key, n, m, init=init, instances=instances, model=model.name)
    return params, opt.make(jnp.float32(1e-3), jnp.float32(0.0), 1).init(params)
  params, opt_state = jax.eval_shape(fresh, jax.random.key(0))
  return nbytes(params) + nbytes(opt_state), nbytes(params)


register_model("bottleneck", bottleneck,
               "x' = f(WᵀW x + b): the study's model, hidden layer linear")
register_model("privileged", privileged,
               "h = f(W x), x' = f(Wᵀ h + b): f on the hidden layer too (TMS)")
register_model("abs", abs_model,
               "h = f(W₁ x), y = ReLU(W₂ h + b), target |x|, x in [-1, 1] (TMS computation)",
               init=untied_init, draw=("W", "W2"), target=jnp.abs, signed=True, wide=True)
register_model("bottleneck_normal_bias", bottleneck,
               "the bottleneck with b₀ ~ N(0, 1) (Liu, Liu & Gore 2025)", init=normal_bias_init)
