"""What the SAE stage trains: `SAESpec`, and `SAEGrid`, an `SAESpec` on the toy models of
a result, the grid spec the engine lays out and trains (pure Python + numpy, no jax).

The second stage of a sweep trains sparse autoencoders (SAEs) on the hidden activations
of every toy model of a result (`sae/grid.py`). `SAESpec` holds the SAE grid and its
static settings; `SAEGrid` adds the toy models it reads and implements the engine's
grid protocol (`gridspec.GridSpec`): its points are the toy models, one group per
dictionary multiple, each point training its whole L1 x SAE-seed grid. Its identity (the
SAE spec, the toy result's identity and precision, the SAE engine's code, the toy's data
family by its code digest, library versions, JAX settings) keys the cache and checkpoints.

    spec = SAESpec(dict_multiples=(2,), l1s=(0.03, 0.1), sae_seeds=(0, 1, 2))
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from typing import Any, NamedTuple

import numpy as np

from superpos_jax import families, provenance
from superpos_jax.gridspec import LayoutFacts
from superpos_jax.spec import MAX_INT, MAX_WINDOWS, SpecError, SweepSpec, as_tuple

# The SAE grid axes, after the toy model's `spec.AXES`, in every SAE result array.
SAE_AXES = ("dict_multiple", "l1", "sae_seed")
# The module whose import closure is the SAE engine (`provenance.engine_code`).
ENGINE_ROOT = "sae.grid"
# Intermediates alive per SAE during one step, in units of one [k + m, B] float32 array.
STEP_LIVE_ARRAYS = 8


@dataclasses.dataclass(frozen=True)
class SAESpec:
  """The SAE grid and the settings of one SAE's training (Bricken et al. 2023).

  Attributes:
    dict_multiples: dictionary sizes as multiples of the toy model's n (latents k = r·n);
      an axis of static shapes (one compiled group per value).
    l1s: L1 coefficients λ of `‖h − ĥ‖² + λ‖c‖₁` (an array axis).
    sae_seeds: seeds of the SAEs' initial dictionaries.
    steps: Adam steps (fresh batch of the toy model's own data every step).
    batch_size: examples per step.
    lr: Adam's learning rate.
    log_every: steps per loss-history window.
    eval_size: examples in the fixed evaluation set (metrics, dead latents).
  """

  dict_multiples: tuple[int, ...] = (2,)
  l1s: tuple[float, ...] = (0.1,)
  sae_seeds: tuple[int, ...] = (0,)
  steps: int = 2_000
  batch_size: int = 256
  lr: float = 1e-3
  log_every: int = 100
  eval_size: int = 16_384

  def __new__(cls, *args, **kwargs):
    # The dataclass __init__ would raise a bare TypeError for an unknown field.
    unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise SpecError(f"unknown SAESpec field(s) {', '.join(map(repr, unknown))}; valid: "
                      f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    return super().__new__(cls)

  # long: one check per field, in field order
  def __post_init__(self):
    for f, cast in (("dict_multiples", operator.index), ("l1s", float), ("sae_seeds", operator.index)):
      object.__setattr__(self, f, as_tuple(f, getattr(self, f), cast))
    for f in ("steps", "batch_size", "log_every", "eval_size"):
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_INT:
        raise SpecError(f"{f} must be a positive integer below 2^31, got {v!r}")
      object.__setattr__(self, f, int(v))
    if self.steps // self.log_every > MAX_WINDOWS:
      raise SpecError(f"steps / log_every must be at most {MAX_WINDOWS:,} loss-history windows")
    if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float, np.integer, np.floating)):
      raise SpecError(f"lr must be a number, got {self.lr!r}")
    object.__setattr__(self, "lr", float(self.lr))
    for f in ("dict_multiples", "l1s", "sae_seeds"):
      values = getattr(self, f)
      if not values:
        raise SpecError(f"{f} must not be empty")
      if len(set(values)) != len(values):
        raise SpecError(f"{f} must be distinct, got {values}")
    if min(self.dict_multiples) < 1:
      raise SpecError(f"every dict multiple must be >= 1, got {self.dict_multiples}")
    if not all(v >= 0 and math.isfinite(_float32(v)) for v in self.l1s):
      raise SpecError(f"every l1 coefficient must be >= 0 and finite in float32, got {self.l1s}")
    if not all(0 <= s < 2**31 for s in self.sae_seeds):
      raise SpecError(f"sae seeds must be integers in [0, 2^31), got {self.sae_seeds}")
    if not (self.lr > 0 and math.isfinite(_float32(self.lr)) and _float32(self.lr) > 0):
      raise SpecError(f"lr must be > 0 and finite in float32, got {self.lr}")

  @property
  def grid_shape(self) -> tuple[int, int, int]:
    """`(K, Λ, R)`: dict multiples, L1 coefficients, SAE seeds."""
    return (len(self.dict_multiples), len(self.l1s), len(self.sae_seeds))

  def coords(self) -> dict[str, Any]:
    return {"dict_multiple": list(self.dict_multiples), "l1": list(self.l1s),
            "sae_seed": list(self.sae_seeds)}

  def history_steps(self) -> list[int]:
    """Step count at the end of each loss-history window."""
    ends = list(range(self.log_every, self.steps + 1, self.log_every))
    if not ends or ends[-1] != self.steps:
      ends.append(self.steps)
    return ends

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "SAESpec":
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise SpecError(f"unknown SAESpec field(s) {unknown}")
    return cls(**d)


def _float32(v: float) -> float:
  with np.errstate(over="ignore"):
    return float(np.float32(v))


class ToyModels(NamedTuple):
  """Every toy model of a result, flattened in `spec.AXES` order."""

  W: np.ndarray  # [P, m, n]
  density: np.ndarray  # [P]
  seed: np.ndarray  # [P]
  shape: tuple[int, ...]  # the toy grid


def toy_models(result) -> ToyModels:
  """The toy models of `result` (a `results.SweepResult`) and their densities and seeds
  (bottleneck only: the SAE stage reads `h = W x`)."""
  spec = result.spec
  if spec.model != "bottleneck":
    raise SpecError(f"the SAE stage reads h = W x of the bottleneck model; this result's "
                    f"model is {spec.model!r}")
  axes = result.axes
  shape = tuple(len(result.coords[a]) for a in axes)

  def along(axis):
    v = np.asarray(result.coords[axis])
    return np.broadcast_to(v.reshape([-1 if a == axis else 1 for a in axes]), shape).ravel()

  W = np.asarray(result["W"], np.float32).reshape((-1,) + result["W"].shape[len(shape):])
  return ToyModels(W, along("density").astype(np.float32), along("seed").astype(np.uint32), shape)


@dataclasses.dataclass(frozen=True)
class SAEGrid:
  """`sae`'s SAE grid on every toy model of a result: the grid spec the engine lays out
  (`plan.make_plan`), trains (`sae.grid.run`), caches and checkpoints
  (`gridspec.GridSpec`). Its points are the toy models, one group per dictionary
  multiple; each point trains its whole L1 x SAE-seed grid (Q = Λ·R SAEs) on one batch.
  Equal grids have equal SAE specs and toy identities; the toy arrays are the
  program's arguments, not part of it.

  Attributes:
    sae: the SAE grid and settings.
    toy: the toy result's spec (n, m, its data family).
    toy_digest: the toy result's identity digest (`provenance.digest`).
    toy_precision: the toy result's matmul precision.
    toy_shape: the toy grid (the toy result's axes).
    W, density, seed: every toy model's `[P, m, n]`, `[P]`, `[P]` (`toy_models`).
  """

  sae: SAESpec
  toy: SweepSpec
  toy_digest: str
  toy_precision: str
  toy_shape: tuple[int, ...]
  W: np.ndarray = dataclasses.field(compare=False, repr=False)
  density: np.ndarray = dataclasses.field(compare=False, repr=False)
  seed: np.ndarray = dataclasses.field(compare=False, repr=False)

  @classmethod
  def of(cls, result, sae: SAESpec) -> "SAEGrid":
    """The SAE grid of `sae` on every toy model of `result` (a `results.SweepResult`)."""
    if not isinstance(sae, SAESpec):
      raise SpecError(f"expected an SAESpec, got {type(sae).__name__}")
    toys = toy_models(result)
    digest = result.meta.get("spec_digest") or result.spec.digest()
    precision = result.meta.get("engine", {}).get("precision", "float32")
    return cls(sae, result.spec, digest, precision, toys.shape, toys.W, toys.density, toys.seed)

  n = property(lambda self: self.toy.n, doc="The toy model's features.")
  m = property(lambda self: self.toy.m, doc="The toy model's hidden dimensions.")
  batch_size = property(lambda self: self.sae.batch_size)
  steps = property(lambda self: self.sae.steps)
  log_every = property(lambda self: self.sae.log_every)
  toys = property(lambda self: math.prod(self.toy_shape), doc="Toy models P.")

  @property
  def num_models(self) -> int:
    """SAEs: toy models x dictionary multiples x L1 coefficients x SAE seeds."""
    return self.toys * math.prod(self.sae.grid_shape)

  def history_steps(self) -> np.ndarray:
    return np.asarray(self.sae.history_steps(), np.int64)

  def layout_facts(self) -> LayoutFacts:
    """A toy model's SAE grid of its largest dictionary: its step (`STEP_LIVE_ARRAYS`, as
    the stage had before it moved onto the engine), its evaluation (one toy model at a
    time: the features and `h`, each SAE's codes, error and activity) and its SAEs'
    parameters, Adam's two moments and outputs."""
    K, L, R = self.sae.grid_shape
    n, m, B, Q = self.n, self.m, self.batch_size, L * R
    k = max(self.sae.dict_multiples) * n
    step = 4 * STEP_LIVE_ARRAYS * Q * (k + m) * B
    params = 2 * k * m + k + m
    outputs = m * k + k + k * n + 2 * n + len(self.history_steps()) + 8
    return LayoutFacts(groups=K, points=self.toys, shared_seeds=0, cache_bytes=step,
                       min_chunk=1, working_bytes=step,
                       once_bytes=4 * self.sae.eval_size * (2 * n + m + Q * (2 * k + 2 * m)),
                       state_bytes=4 * Q * (3 * params + 1 + outputs))

  def static_key(self) -> tuple:
    """The SAE settings but the swept L1s and seeds, the grid's shape, and the toy
    models' shapes (their data family is in `registry_entries`)."""
    sae = tuple((f, v) for f, v in self.sae.to_dict().items() if f not in ("l1s", "sae_seeds"))
    return sae + (("grid_shape", self.sae.grid_shape), ("toy", (self.n, self.m, self.toys)))

  def registry_entries(self) -> tuple:
    """The toy's data family (the SAEs train on fresh data of it)."""
    return (families.get("data", self.toy.data),)

  def identity(self) -> dict[str, Any]:
    """What decides the SAEs' numbers (`provenance.PARTS`): the SAE spec with the toy
    result's identity digest and matmul precision, the SAE engine's code, the data
    family's code digest, library versions and JAX settings."""
    (data,) = self.registry_entries()
    spec = {"sae": self.sae.to_dict(), "toy_digest": self.toy_digest,
            "toy_precision": self.toy_precision}
    return {"spec": json.loads(json.dumps(spec)), "code": provenance.engine_code(ENGINE_ROOT),
            "definitions": {"data": {data.name: provenance.code_digest(data)}},
            "versions": provenance.numeric_versions(), "jax": provenance.jax_settings()}

  def digest(self) -> str:
    return provenance.digest(self.identity())
