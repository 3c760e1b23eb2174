"""The registries of model families, data families and optimisers (pure Python).

Like `activations`, each is defined ONCE and registered by name; specs, the CLI's
`--model` / `--data` choices, result metadata and plots read these registries. The jax
code of the built-in families registers itself from `model.py`, `data.py` and
`optimizers.py` (`model.register_model`, `data.register_data`, `optimizers.register_optimizer`
are the user-facing ways to add one); this module imports no jax, so a spec can be
validated and a result read in a process that never imports it.

Every entry is compared by identity (`eq=False`): a compiled program is cached by the
entries it was built from, so re-registering a name with `overwrite=True` can never
reuse a program traced with the old definition. `provenance.code_digest` turns an entry
into a digest of its code (and closed-over values), the part of a result's identity that
says which definition trained it; `version`, given at registration, adds what cannot be
hashed (code that reads a file, calls a C library, ...).
"""

from __future__ import annotations

import dataclasses
import json
import sys
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
    version: a label of what the code digest cannot see (e.g. data the code reads);
      changing it changes the identity of every result trained with the family.
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
  version: str | None = None

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
    version: see `ModelFamily.version`.
    scale: a present feature's value is `scale · value`, in [0, scale) (signed:
      `scale · (2 value - 1)`).
  """

  name: str
  description: str
  fn: Callable[..., Any]
  pairs: bool = False
  max_density: float = 1.0
  scale: float = 1.0
  version: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Optimizer:
  """An optimiser: `factory(lr, weight_decay) -> optax.GradientTransformation`, both
  arguments (swept) arrays, so a new value needs no recompilation.

  Attributes:
    takes_steps: the factory also takes `steps=` (the training's length, static), e.g.
      for a learning-rate schedule.
    signed_decay: a negative weight decay means something to it (a spec may sweep
      one); for the others it is refused.
    version: see `ModelFamily.version`.
  """

  name: str
  description: str
  factory: Callable[..., Any]
  version: str | None = None
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
  if not isinstance(overwrite, bool):
    raise RegistryError(f"{_what(kind)} {name!r}: overwrite must be True or False, got {overwrite!r}")
  if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() \
      or name != name.lower():
    raise RegistryError(f"{_what(kind)} name must be a lower-case identifier, got {name!r}")
  if name in _KINDS[kind] and not overwrite:
    raise RegistryError(f"{_what(kind)} {name!r} is already registered "
                        f"(pass overwrite=True to replace it)")


def _what(kind: str) -> str:
  return kind if kind == "optimizer" else f"{kind} family"


def check_entry(entry) -> None:
  """A one-line `RegistryError` for a field of the wrong type (a string where a bool or a
  number belongs, a description that is not one line of text, a version that is not a
  string): checked when registered, so that nothing fails later, when a trained result's
  metadata is written."""
  what = f"{type(entry).__name__} {entry.name!r}"
  for f in dataclasses.fields(entry):
    v = getattr(entry, f.name)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if f.name == "description" and not (isinstance(v, str) and v.strip() and "\n" not in v.strip()):
      raise RegistryError(f"{what}: description must be one line of text, got {v!r}")
    if f.name == "version" and v is not None and not isinstance(v, str):
      raise RegistryError(f"{what}: version must be a string or None, got {v!r}")
    if kind == "bool" and not isinstance(v, bool):
      raise RegistryError(f"{what}: {f.name} must be True or False, got {v!r}")
    if kind == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))):
      raise RegistryError(f"{what}: {f.name} must be a number, got {v!r}")
    if kind.startswith("Callable") and v is not None and not callable(v):
      raise RegistryError(f"{what}: {f.name} must be callable, got {v!r}")
    if kind.startswith("tuple[str") and not (isinstance(v, tuple) and all(isinstance(x, str) for x in v)):
      raise RegistryError(f"{what}: {f.name} must be a tuple of names, got {v!r}")
  try:
    json.dumps({"name": entry.name, "description": entry.description, "version": entry.version})
  except (TypeError, ValueError) as e:
    raise RegistryError(f"{what}: its metadata cannot be written to a result file ({e})") from None


def add(kind: str, entry, *, overwrite: bool = False):
  """Registers `entry` (a `ModelFamily`, `DataFamily` or `Optimizer`) under `entry.name`,
  after `check_entry`."""
  _check_name(kind, entry.name, overwrite)
  check_entry(entry)
  _KINDS[kind][entry.name] = entry
  return entry


def _load_builtins(kind: str) -> None:
  """Imports the module that registers `kind`'s built-ins (jax code), once."""
  module = {"model": "superpos_jax.model", "data": "superpos_jax.data",
            "optimizer": "superpos_jax.optimizers"}[kind]
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
