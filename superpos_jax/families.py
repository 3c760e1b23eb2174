"""The registries of model families, data families and optimisers (pure Python).

Like `activations`, each is defined ONCE and registered by name; specs, the CLI's
`--model` / `--data` choices, result metadata and plots read these registries. The jax
code of the built-in families registers itself from `model.py`, `data.py` and
`train.py` (`model.register_model`, `data.register_data`, `train.register_optimizer`
are the user-facing ways to add one); this module imports no jax, so a spec can be
validated and a result read in a process that never imports it.

Every entry is compared by identity (`eq=False`): a compiled program is cached by the
entries it was built from, so re-registering a name with `overwrite=True` can never
reuse a program traced with the old definition. `code_digest` turns an entry into a
digest of its code (and closed-over values), the part of a result's cache key that
says which definition trained it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import sys
import types
from typing import Any, Callable


def identity(xs):
  """The target of an autoencoder: its inputs."""
  return xs


class RegistryError(ValueError):
  """A bad registration: a bad name, or a name registered twice without `overwrite`."""


class UnknownFamilyError(ValueError):
  """A name that is not in a registry (the message lists the valid ones)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ModelFamily:
  """A model family, defined once in batched form (batch as the minor axis).

  Attributes:
    name: the registry name (`SweepSpec.model`).
    description: one line for `--help`, the README and result metadata.
    apply: `apply(params, xs [n, B], act) -> out [n, B]`; `act` maps `[k, B]` columns
      (the engine vmaps a per-example activation for it).
    init: `init(key, n, m, act) -> params`, a pytree of float32 arrays whose named leaves
      (`named_params`) include `W [m, n]` (column i: feature i's direction, what the
      metrics read) and `b [n]`; the leaves in `draw` are then replaced by the init
      family's draw (times the init scale α), so `init` may leave them zero.
    draw: leaves drawn from the init family, each from its own key
      (`split(key, len(draw))`; the key itself when there is one).
    target: what the model is trained to output for inputs `xs` (same shape).
    signed: inputs in [-1, 1) instead of [0, 1).
    wide: m may exceed n (no bottleneck).
    module: the `flax.linen.Module` the family was built from, else None.
  """

  name: str
  description: str
  apply: Callable[..., Any]
  init: Callable[..., Any]
  draw: tuple[str, ...] = ("W",)
  target: Callable[[Any], Any] = None  # None: the inputs themselves
  signed: bool = False
  wide: bool = False
  module: Any = None

  def __post_init__(self):
    if self.target is None:
      object.__setattr__(self, "target", identity)

  def forward(self, params, x, act):
    """The one-example form, derived: `x [n] -> [n]` as a batch of one column; `act`
    takes one example `[n]` (vmapped over the column, so one written for `[n]` only,
    say with `axis=-1`, is right too)."""
    import jax  # families.py itself stays importable without jax
    return self.apply(params, x[:, None], jax.vmap(act, in_axes=1, out_axes=1))[:, 0]


@dataclasses.dataclass(frozen=True, eq=False)
class DataFamily:
  """A data family: `fn(u [n, ...], density) -> (present bool, value in [0, 1))`, both
  of `u`'s shape, from ONE uniform per feature (so every family reads the same draw and
  models of a seed share it: common random numbers).

  Attributes:
    pairs: features come in pairs `(2k, 2k+1)`: n must be even.
    max_density: the largest density the family can produce.
    scale: a present feature's value is `scale · value`, in [0, scale) (signed:
      `scale · (2 value - 1)`).
  """

  name: str
  description: str
  fn: Callable[..., Any]
  pairs: bool = False
  max_density: float = 1.0
  scale: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
  """An optimiser: `factory(lr, weight_decay) -> optax.GradientTransformation`, both
  arguments (swept) arrays, so a new value needs no recompilation.

  Attributes:
    takes_steps: the factory also takes `steps=` (the training's length, static), e.g.
      for a learning-rate schedule.
    signed_decay: a negative weight decay means something to it (a spec may sweep
      one); for the others it is refused.
  """

  name: str
  description: str
  factory: Callable[..., Any]
  takes_steps: bool = False
  signed_decay: bool = False

  def make(self, lr, weight_decay, steps: int):
    """The transformation of one model's `lr` and `weight_decay` for `steps` steps."""
    if self.takes_steps:
      return self.factory(lr, weight_decay, steps=steps)
    return self.factory(lr, weight_decay)


_MODELS: dict[str, ModelFamily] = {}
_DATA: dict[str, DataFamily] = {}
_OPTIMIZERS: dict[str, Optimizer] = {}
_KINDS = {"model": _MODELS, "data": _DATA, "optimizer": _OPTIMIZERS}


def _check_name(kind: str, name: str, overwrite: bool) -> None:
  if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() \
      or name != name.lower():
    raise RegistryError(f"{_what(kind)} name must be a lower-case identifier, got {name!r}")
  if name in _KINDS[kind] and not overwrite:
    raise RegistryError(f"{_what(kind)} {name!r} is already registered "
                        f"(pass overwrite=True to replace it)")


def _what(kind: str) -> str:
  return kind if kind == "optimizer" else f"{kind} family"


def add(kind: str, entry, *, overwrite: bool = False):
  """Registers `entry` (a `ModelFamily`, `DataFamily` or `Optimizer`) under `entry.name`."""
  _check_name(kind, entry.name, overwrite)
  _KINDS[kind][entry.name] = entry
  return entry


def _load_builtins(kind: str) -> None:
  """Imports the module that registers `kind`'s built-ins (jax code), once."""
  module = {"model": "superpos_jax.model", "data": "superpos_jax.data",
            "optimizer": "superpos_jax.train"}[kind]
  if module not in sys.modules:
    __import__(module)


def get(kind: str, name: str):
  """The entry `name` of registry `kind` ("model", "data", "optimizer")."""
  _load_builtins(kind)
  try:
    return _KINDS[kind][name]
  except KeyError:
    raise UnknownFamilyError(f"unknown {kind} {name!r}; valid: {', '.join(names(kind))}") from None


def names(kind: str) -> tuple[str, ...]:
  """Registered names of `kind`, in registration order (built-ins first)."""
  _load_builtins(kind)
  return tuple(_KINDS[kind])


def descriptions(kind: str) -> dict[str, str]:
  """name -> one-line description, for `--help` and docs."""
  _load_builtins(kind)
  return {k: v.description for k, v in _KINDS[kind].items()}


def entries(spec) -> tuple:
  """The registry entries a spec's program is built from: its activations, model family,
  data family and optimiser (compared by identity: the program cache's key)."""
  from superpos_jax import activations  # jax: only where a program is built
  return (tuple(activations.get(a) for a in spec.activations), get("model", spec.model),
          get("data", spec.data), get("optimizer", spec.optimizer))


def _digest_into(h, obj, seen: set) -> None:
  """Feeds what decides `obj`'s numbers into hash `h`: a function's bytecode, constants,
  defaults, closed-over values and the user functions it calls; a class's methods; a
  frozen dataclass's (a Flax module's) fields. Library objects (jax, numpy, ...) count by
  qualified name: their code is in the library version, which the digest also holds."""
  if id(obj) in seen:
    h.update(b"<seen>")
    return
  if isinstance(obj, (str, bytes, int, float, complex, bool, type(None))):
    h.update(repr(obj).encode())
    return
  seen.add(id(obj))
  if isinstance(obj, (tuple, list)):
    h.update(f"{type(obj).__name__}{len(obj)}".encode())
    for item in obj:
      _digest_into(h, item, seen)
    return
  if isinstance(obj, (frozenset, set)):
    for r in sorted(map(repr, obj)):
      h.update(r.encode())
    return
  if isinstance(obj, dict):
    for k in sorted(obj, key=repr):
      h.update(repr(k).encode())
      _digest_into(h, obj[k], seen)
    return
  module = getattr(obj, "__module__", None) or ""
  user = not module.split(".")[0] in ("jax", "jaxlib", "numpy", "optax", "flax", "builtins")
  if isinstance(obj, types.FunctionType) and user:
    _digest_into(h, obj.__code__, seen)
    _digest_into(h, (obj.__defaults__, obj.__kwdefaults__), seen)
    for cell in obj.__closure__ or ():
      try:
        _digest_into(h, cell.cell_contents, seen)
      except ValueError:  # an empty cell
        h.update(b"<empty>")
    for name in _global_names(obj.__code__):
      if name in obj.__globals__:
        h.update(name.encode())
        _digest_into(h, obj.__globals__[name], seen)
    return
  if isinstance(obj, types.CodeType):
    h.update(obj.co_code)
    h.update(repr(obj.co_names).encode())
    for c in obj.co_consts:
      _digest_into(h, c, seen)
    return
  if isinstance(obj, functools.partial):
    _digest_into(h, (obj.func, obj.args, obj.keywords), seen)
    return
  if isinstance(obj, types.MethodType):
    _digest_into(h, (obj.__func__, obj.__self__), seen)
    return
  if isinstance(obj, type) and user:
    h.update(obj.__qualname__.encode())
    for k, v in sorted(vars(obj).items()):
      if isinstance(v, (types.FunctionType, staticmethod, classmethod, property)):
        h.update(k.encode())
        _digest_into(h, getattr(v, "__func__", getattr(v, "fget", v)), seen)
    for base in obj.__mro__[1:]:
      h.update(f"{base.__module__}.{base.__qualname__}".encode())
    return
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    _digest_into(h, type(obj), seen)
    for f in dataclasses.fields(obj):
      if f.name not in ("parent", "name"):  # a Flax module's place in a tree
        h.update(f.name.encode())
        _digest_into(h, getattr(obj, f.name, None), seen)
    return
  if hasattr(obj, "__array__") and hasattr(obj, "dtype"):
    import numpy as np
    a = np.asarray(obj)
    h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return
  if isinstance(obj, types.ModuleType):
    h.update(obj.__name__.encode())
    return
  if user and hasattr(obj, "__dict__") and not callable(getattr(obj, "__wrapped__", None)):
    _digest_into(h, (type(obj), vars(obj)), seen)  # a user object: its class and state
    return
  # A library function or object: by name (its code is versioned with the library).
  h.update(f"{type(obj).__qualname__}:{module}.{getattr(obj, '__qualname__', '')}".encode())
  wrapped = getattr(obj, "__wrapped__", None) or getattr(obj, "fun", None)
  if user and callable(wrapped):
    _digest_into(h, wrapped, seen)


def _global_names(code: types.CodeType) -> list[str]:
  """Global names a code object (and the code nested in it) reads."""
  out = list(code.co_names)
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      out += _global_names(c)
  return sorted(set(out))


def code_digest(entry) -> str:
  """Digest of what decides a registry entry's numbers (everything but its name and
  description): the same definition gives the same digest in every process, a changed
  function body, closed-over value or module field a different one."""
  h = hashlib.sha256()
  fields = [f.name for f in dataclasses.fields(entry) if f.name not in ("name", "description")]
  _digest_into(h, [type(entry).__name__] + [getattr(entry, f) for f in fields], set())
  return h.hexdigest()[:16]


def describe(spec) -> dict[str, Any]:
  """What a result's metadata says about the definitions it was trained with: every
  registered entry the spec names, its description, code digest and, for a Flax model,
  the module's class."""
  acts, model, data, opt = entries(spec)
  entry = lambda e: {"name": e.name, "description": e.description, "digest": code_digest(e)}
  out = {"activations": [entry(a) for a in acts], "model": entry(model), "data": entry(data),
         "optimizer": entry(opt)}
  if model.module is not None:
    out["model"]["flax_module"] = f"{model.module.__module__}.{model.module.__qualname__}"
  return out
