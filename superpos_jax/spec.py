"""What to train: `SweepSpec`, its validation and its digest (pure Python + numpy).

A spec lists the grid axes (swept: arrays inside the compiled program) and the static
settings (compiled in). It is a frozen dataclass: derive variants with
`dataclasses.replace`, never by mutation. This module imports no jax, so a result file's
spec can be read back as a typed `SweepSpec` by the plotting layer.

    spec = SweepSpec(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2))
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import operator
from typing import Any

import numpy as np

from superpos_jax.importance import (IMPORTANCE_KINDS, geometric_importance,  # noqa: F401
                                     relative_importance, uniform_importance)
from superpos_jax.inits import INITS
from superpos_jax import families
from superpos_jax.gridspec import LayoutFacts
from superpos_jax.phases import DEFAULT_THRESHOLDS, PhaseThresholds

# "shared": common random numbers per seed; "per_point": a stream per grid point.
RNG_MODES = ("shared", "per_point")
# The study's seven activations, in the order figures show them.
STUDY_ACTIVATIONS = ("linear", "relu", "gelu", "silu", "sigmoid", "tanh", "solu")


@dataclasses.dataclass(frozen=True)
class Axis:
  """One grid axis, declared once: its coordinate name (a result's axis), the
  `SweepSpec` field that lists its values, what one value is called in messages, and
  the type of its values."""

  name: str
  field: str
  what: str
  kind: type


# The grid axes, in the order of every result array's leading dimensions: the spec's
# fields, grid shape and coordinates, the result's axes, the program's swept inputs and
# the plan's static key all read this table.
GRID = (Axis("activation", "activations", "activation", str),
        Axis("density", "densities", "density", float),
        Axis("importance", "importances", "importance", float),
        Axis("lr", "lrs", "learning rate", float),
        Axis("weight_decay", "weight_decays", "weight decay", float),
        Axis("init_scale", "init_scales", "init scale", float),
        Axis("seed", "seeds", "seed", int))
AXES = tuple(a.name for a in GRID)


class SpecError(ValueError, TypeError):
  """An invalid sweep specification (message says which field and why).

  Both a ValueError and a TypeError, so code that caught the TypeError of a wrongly typed
  field before keeps working.
  """


# Bounds that keep a bad number from exhausting memory before anything else is checked.
MAX_AXIS_LENGTH = 10**6  # values per grid axis (e.g. seeds)
MAX_INT = 2**31 - 1  # int32: step counters, sizes and seeds inside the program
MAX_WINDOWS = 10**6  # loss-history windows per model (steps / log_every)
# float32 uniforms in [0, 1) are multiples of 2^-23 at best (`data.thin`): a smaller
# density would draw all-zero data.
MIN_DENSITY = 2.0**-23

_INT_FIELDS = ("n", "m", "steps", "batch_size", "log_every", "eval_size", "init_instances")
_FLOAT_FIELDS = ("phase_encoded", "phase_not_encoded")
_NAME_FIELDS = ("importance_kind", "init", "rng", "init_rng", "model", "data", "optimizer")
# Swept float axes: field -> what its error messages call one value.
_FLOAT_AXES = tuple((a.field, a.what) for a in GRID if a.kind is float)
_CAST = {str: str, float: float, int: operator.index}


def as_tuple(field: str, values: Any, cast) -> tuple:
  """`values` (any sized iterable, not a string) as a tuple of `cast(v)`, or a SpecError.

  The length is checked before the tuple is built, so `range(3_000_000_000)` fails at once
  instead of filling memory.
  """
  kind = getattr(cast, "__name__", "value").replace("index", "int")
  if isinstance(values, (str, bytes)):
    raise SpecError(f"{field} must be a sequence, e.g. ({values!r},), not the string {values!r}")
  try:
    length = len(values)
  except TypeError:
    raise SpecError(f"{field} must be a sequence of {kind}, got {values!r}") from None
  if length > MAX_AXIS_LENGTH:
    raise SpecError(f"{field} has {length:,} values, at most {MAX_AXIS_LENGTH:,} are allowed")
  try:
    return tuple(cast(v) for v in values)
  except SpecError:
    raise
  except (TypeError, ValueError, OverflowError):
    raise SpecError(f"{field} must be a sequence of {kind}, got {values!r}") from None


def _float32(v: float) -> float:
  """`v` as the float32 the program computes with (inf where it overflows)."""
  with np.errstate(over="ignore"):
    return float(np.float32(v))


def check_spec(spec: Any) -> "SweepSpec":
  """`spec` if it is a `SweepSpec`, else a one-line `SpecError` (e.g. for a plain dict)."""
  if not isinstance(spec, SweepSpec):
    hint = "; build one with SweepSpec(**fields)" if isinstance(spec, dict) else ""
    raise SpecError(f"expected a SweepSpec, got {type(spec).__name__}{hint}")
  return spec
# Whether `SweepSpec` checks activation names against the registry (which needs jax);
# off while a result file is read back (see `SweepSpec.from_dict`).
_CHECK_REGISTRY = contextvars.ContextVar("check_registry", default=True)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What to train: the grid axes (swept) and the static settings (compiled in).

  Grid axes (arrays inside the program; changing their values reuses the compiled
  program as long as their lengths stay the same): `activations` (grouped, static names),
  `densities`, `importances`, `lrs`, `weight_decays`, `init_scales`, `seeds`.

  Attributes:
    n: features.
    m: hidden dimensions.
    activations: registry names (`superpos_jax.activations.names()`).
    densities: feature densities `1 - S`, each in (0, 1].
    importance_kind: "geometric" (`I_i = r**i`), "relative" (`[1, r, ..., r]`),
      "uniform" (`I_i = 1`; importances must be `(1.0,)`) or "explicit"
      (`importance_vectors` given; `importances` are their labels).
    importances: the importance axis: the parameter r of each setting.
    importance_vectors: explicit `[n]` vectors, only with importance_kind="explicit".
    lrs: learning rates (an axis: optax takes them as arrays, no recompilation).
    seeds: non-negative integer seeds.
    steps: optimisation steps (fresh batch every step).
    batch_size: examples per step.
    weight_decays: AdamW's decoupled weight decays λ (an axis; PyTorch's default 0.01);
      negative only for an optimiser with `signed_decay` ("adamw_liu": γ < 0 pulls
      each feature's norm towards 1).
      A stored spec's scalar `weight_decay` reads as `weight_decays=(weight_decay,)`.
    init_scales: init scales α (an axis): `W₀ = α · (the init family's draw)`.
    init: an init family of `inits.INITS` ("xavier_normal" per model, "notebook", or
      "normal" with σ² = 1/m; α rescales any of them).
    model: a registered model family ("bottleneck", "privileged", "abs", or one added
      with `model.register_model`), static.
    data: a registered data family ("independent", "correlated", "anticorrelated"
      pairs, or one added with `data.register_data`), static.
    optimizer: a registered optimiser ("adamw", PyTorch's defaults; or one added with
      `optimizers.register_optimizer`): a factory of the swept lr and weight decay.
    init_instances: instance count for the "notebook" init's std.
    log_every: steps per loss-history window.
    eval_size: examples in the fixed evaluation set (used to pick the best seed).
    rng: the data stream: "shared" (common random numbers per seed, the default: a
      variance reduction, not a bias) or "per_point" (a stream per grid point).
    init_rng: the initial W: "per_point" (the default: every grid point starts from its
      own draw, derived from its seed, density and importance; every lr, weight decay
      and init scale of that point shares the draw, `W₀ = α·Z` with one Z) or "shared"
      (every point of a seed starts from the same W, as the engine did before).
    phase_encoded, phase_not_encoded: n=2 phase thresholds (`phases.PhaseThresholds`).
  """

  n: int
  m: int
  activations: tuple[str, ...] = STUDY_ACTIVATIONS
  densities: tuple[float, ...] = (1.0,)
  importance_kind: str = "geometric"
  importances: tuple[float, ...] = (0.7,)
  importance_vectors: tuple[tuple[float, ...], ...] | None = None
  lrs: tuple[float, ...] = (1e-3,)
  seeds: tuple[int, ...] = (0,)
  steps: int = 10_000
  batch_size: int = 1024
  weight_decays: tuple[float, ...] = (0.01,)
  init_scales: tuple[float, ...] = (1.0,)
  init: str = "xavier_normal"
  init_instances: int = 20
  log_every: int = 100
  eval_size: int = 16_384
  rng: str = "shared"
  init_rng: str = "per_point"
  model: str = "bottleneck"
  data: str = "independent"
  optimizer: str = "adamw"
  phase_encoded: float = DEFAULT_THRESHOLDS.encoded
  phase_not_encoded: float = DEFAULT_THRESHOLDS.not_encoded

  def __new__(cls, *args, **kwargs):
    # The dataclass __init__ would raise a bare TypeError for an unknown field.
    unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise SpecError(f"unknown SweepSpec field(s) {', '.join(map(repr, unknown))}; valid: "
                      f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    return super().__new__(cls)

  def __post_init__(self):
    for f in _INT_FIELDS:
      v = getattr(self, f)
      if isinstance(v, np.integer):  # keep the spec JSON-able
        object.__setattr__(self, f, int(v))
    for f in _FLOAT_FIELDS:
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise SpecError(f"{f} must be a number, got {v!r}")
      object.__setattr__(self, f, float(v))
    for f in _NAME_FIELDS:
      v = getattr(self, f)
      if not isinstance(v, str):
        raise SpecError(f"{f} must be a string, got {v!r}")
    # Accept lists from callers, store tuples so the spec stays hashable.
    for axis in GRID:
      object.__setattr__(self, axis.field, as_tuple(axis.field, getattr(self, axis.field),
                                                    _CAST[axis.kind]))
    if self.importance_vectors is not None:
      vecs = as_tuple("importance_vectors", self.importance_vectors,
                       lambda v: as_tuple("each importance vector", v, float))
      object.__setattr__(self, "importance_vectors", vecs)
    self.validate()

  # long: one check per field, in field order, each a line
  def validate(self) -> None:
    """Raises `SpecError` naming the first invalid field."""
    def need(ok, msg):
      if not ok:
        raise SpecError(msg)

    for f in _INT_FIELDS:
      v = getattr(self, f)
      need(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= MAX_INT,
           f"{f} must be a positive integer below 2^31, got {v!r}")
    need(self.steps // self.log_every <= MAX_WINDOWS,
         f"steps / log_every must be at most {MAX_WINDOWS:,} loss-history windows "
         f"(got {self.steps:,} / {self.log_every:,})")
    for axis in GRID:
      need(len(getattr(self, axis.field)) >= 1, f"{axis.field} must not be empty")
    if _CHECK_REGISTRY.get():
      from superpos_jax import activations  # the registry holds jax functions
      for name in self.activations:
        activations.get(name)  # raises UnknownActivationError listing valid names
    need(len(set(self.activations)) == len(self.activations), "activations must be distinct")
    for d in self.densities:
      need(isinstance(d, (int, float)) and 0.0 < d <= 1.0 and math.isfinite(d),
           f"every density must be in (0, 1], got {d!r}")
      need(d >= MIN_DENSITY, f"every density must be at least 2^-23 = {MIN_DENSITY:.3g} "
           f"(float32 uniforms cannot resolve less: the data would be all zeros), got {d!r}")
    for f, _ in (*_FLOAT_AXES, ("seeds", "")):
      need(len(set(getattr(self, f))) == len(getattr(self, f)), f"{f} must be distinct")
    for f, what in (("lrs", "learning rate"), ("init_scales", "init scale")):
      for v in getattr(self, f):
        need(v > 0 and math.isfinite(v), f"every {what} must be > 0, got {v!r}")
    # The program computes in float32: a value that is inf or 0 there would train wrong.
    for f, what in _FLOAT_AXES:
      for v in getattr(self, f):
        v32 = _float32(v)
        need(math.isfinite(v32), f"every {what} must be finite in float32 (|x| < 3.4e38), got {v!r}")
        need(v == 0 or v32 != 0, f"every {what} must be 0 or at least 1.4e-45 in magnitude "
                                 f"(float32 would round {v!r} to 0)")
    for s in self.seeds:
      need(isinstance(s, (int, np.integer)) and 0 <= s < 2**31, f"seeds must be integers in [0, 2^31), got {s!r}")
    for wd in self.weight_decays:
      need(math.isfinite(wd), f"every weight decay must be finite, got {wd}")
    self._validate_families()
    need(self.init in INITS, f"unknown init {self.init!r}; valid: {', '.join(INITS)}")
    need(self.rng in RNG_MODES, f"unknown rng {self.rng!r}; valid: {', '.join(RNG_MODES)}")
    need(self.init_rng in RNG_MODES,
         f"unknown init_rng {self.init_rng!r}; valid: {', '.join(RNG_MODES)}")
    kinds = (*IMPORTANCE_KINDS, "explicit")
    need(self.importance_kind in kinds,
         f"unknown importance_kind {self.importance_kind!r}; valid: {', '.join(kinds)}")
    if self.importance_kind == "explicit":
      vecs = self.importance_vectors
      need(vecs is not None and len(vecs) == len(self.importances),
           "importance_kind='explicit' needs one importance vector per importance label")
      for v in vecs:
        need(len(v) == self.n, f"each importance vector must have n={self.n} entries")
    else:
      need(self.importance_vectors is None, "importance_vectors need importance_kind='explicit'")
      if self.importance_kind == "uniform":
        need(self.importances == (1.0,), "uniform importance takes importances=(1.0,)")
    for v in self.importance_matrix().ravel():
      need(v > 0 and np.isfinite(np.float32(v)) and np.float32(v) > 0,
           f"every importance must be > 0 and finite in float32, got {v}")
    need(0 <= self.phase_not_encoded <= self.phase_encoded,
         "phase thresholds need 0 <= phase_not_encoded <= phase_encoded")

  def _validate_families(self) -> None:
    """Model, data family and optimiser names, and what the families need (checked
    against the registries, except while a result file is read back)."""
    if not _CHECK_REGISTRY.get():
      return
    for field in ("model", "data", "optimizer"):
      if getattr(self, field) not in families.names(field):
        raise SpecError(f"unknown {field} {getattr(self, field)!r}; valid: "
                        f"{', '.join(families.names(field))}")
    if min(self.weight_decays) < 0 and not families.get("optimizer", self.optimizer).signed_decay:
      raise SpecError(f"every weight decay must be >= 0 for optimizer={self.optimizer!r}, got "
                      f"{min(self.weight_decays)} (a negative one needs an optimiser that "
                      f"gives it a meaning, e.g. 'adamw_liu')")
    if not families.get("model", self.model).wide and self.m > self.n:
      raise SpecError(f"m must be <= n for model={self.model!r}, a bottleneck "
                      f"(got n={self.n}, m={self.m})")
    data = families.get("data", self.data)
    if data.pairs and self.n % 2:
      raise SpecError(f"data={self.data!r} pairs features (2k, 2k+1): n must be even, got {self.n}")
    if max(self.densities) > data.max_density:
      raise SpecError(f"data={self.data!r} needs every density <= {data.max_density:g} "
                      f"(the family cannot produce more), got {max(self.densities)}")

  @property
  def grid_shape(self) -> tuple[int, ...]:
    """`(A, D, I, L, WD, AL, S)`, the leading shape of every result array (axes `AXES`)."""
    return tuple(len(getattr(self, axis.field)) for axis in GRID)

  @property
  def weight_decay(self) -> float:
    """The single weight decay (for code written before it became an axis)."""
    if len(self.weight_decays) != 1:
      raise SpecError(f"this spec sweeps {len(self.weight_decays)} weight decays: read weight_decays")
    return self.weight_decays[0]

  @property
  def num_models(self) -> int:
    return math.prod(self.grid_shape)

  @property
  def thresholds(self) -> PhaseThresholds:
    return PhaseThresholds(self.phase_encoded, self.phase_not_encoded)

  def coords(self) -> dict[str, np.ndarray]:
    """Coordinate values of every grid axis, keyed by `AXES`."""
    dtype = {str: None, float: np.float64, int: np.int64}
    return {a.name: np.asarray(getattr(self, a.field), dtype[a.kind]) for a in GRID}

  def importance_matrix(self) -> np.ndarray:
    """`[I, n]` importance vectors of the importance axis."""
    if self.importance_kind == "explicit":
      return np.asarray(self.importance_vectors, np.float64)
    make = IMPORTANCE_KINDS[self.importance_kind]
    return np.stack([make(self.n, float(r)) for r in self.importances])

  def history_steps(self) -> np.ndarray:
    """Step count at the end of each loss-history window."""
    ends = np.arange(self.log_every, self.steps + 1, self.log_every)
    if ends.size == 0 or ends[-1] != self.steps:
      ends = np.append(ends, self.steps)
    return ends

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
    """The spec stored in a result file. Activation names are not checked against this
    process's registry: a result may name an activation registered only where it ran."""
    d = dict(d)
    if "weight_decay" in d:  # written before weight decay became an axis
      d["weight_decays"] = (d.pop("weight_decay"),)
    if d.get("importance_vectors") is not None:
      d["importance_vectors"] = tuple(tuple(v) for v in d["importance_vectors"])
    token = _CHECK_REGISTRY.set(False)
    try:
      return cls(**d)
    finally:
      _CHECK_REGISTRY.reset(token)

  def layout_facts(self) -> LayoutFacts:
    """What a plan reads of this grid (`gridspec.GridSpec`), from `model.layout_facts`."""
    from superpos_jax import model
    return model.layout_facts(self)

  def static_key(self) -> tuple:
    """Every field but the swept values, and the swept axes' lengths (`gridspec.GridSpec`)."""
    swept = {a.field for a in GRID if a.name != "activation"} | {"importance_vectors"}
    return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                 if f.name not in swept) + (("grid_shape", self.grid_shape),)

  def registry_entries(self) -> tuple:
    """Its activations, model family, data family and optimiser (`families.entries`)."""
    return families.entries(self)

  def identity(self) -> dict[str, Any]:
    """What decides this spec's numbers in this process (`provenance.identity`: the spec,
    the engine's code, the registered definitions it names, library versions, JAX's
    numeric settings)."""
    from superpos_jax import provenance
    return provenance.identity(self)

  def digest(self) -> str:
    """Short hash of `identity()`: the key of a cached result, a compiled program's
    cache entry and a checkpoint."""
    from superpos_jax import provenance
    return provenance.digest(self.identity())
