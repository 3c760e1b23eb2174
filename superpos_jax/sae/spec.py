"""What the SAE stage trains: `SAESpec` and its digest (pure Python, no jax).

The second stage of a sweep trains sparse autoencoders (SAEs) on the hidden activations
of every toy model of a result (`sae_sweep.py`); this spec holds the SAE grid and its
static settings. Its digest, together with the toy result's own digest, is the key of a
cached SAE result.

    spec = SAESpec(dict_multiples=(2,), l1s=(0.03, 0.1), sae_seeds=(0, 1, 2))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

from superpos_jax.spec import MAX_INT, SpecError, as_tuple

# The SAE grid axes, after the toy model's `spec.AXES`, in every SAE result array.
SAE_AXES = ("dict_multiple", "l1", "sae_seed")


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

  def __post_init__(self):
    object.__setattr__(self, "dict_multiples", as_tuple("dict_multiples", self.dict_multiples, int))
    object.__setattr__(self, "l1s", as_tuple("l1s", self.l1s, float))
    object.__setattr__(self, "sae_seeds", as_tuple("sae_seeds", self.sae_seeds, int))
    object.__setattr__(self, "lr", float(self.lr))
    for f in ("steps", "batch_size", "log_every", "eval_size"):
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_INT:
        raise SpecError(f"{f} must be a positive integer below 2^31, got {v!r}")
    for f in ("dict_multiples", "l1s", "sae_seeds"):
      values = getattr(self, f)
      if not values:
        raise SpecError(f"{f} must not be empty")
      if len(set(values)) != len(values):
        raise SpecError(f"{f} must be distinct, got {values}")
    if min(self.dict_multiples) < 1:
      raise SpecError(f"every dict multiple must be >= 1, got {self.dict_multiples}")
    if not all(v >= 0 and math.isfinite(v) for v in self.l1s):
      raise SpecError(f"every l1 coefficient must be finite and >= 0, got {self.l1s}")
    if not all(0 <= s < 2**31 for s in self.sae_seeds):
      raise SpecError(f"sae seeds must be integers in [0, 2^31), got {self.sae_seeds}")
    if not (self.lr > 0 and math.isfinite(self.lr)):
      raise SpecError(f"lr must be > 0, got {self.lr}")

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

  def digest(self, toy_digest: str) -> str:
    """Short hash of this spec, the toy result's digest (`SweepSpec.digest`), the SAE
    stage's source code and the numeric libraries' versions: the cache key."""
    from superpos_jax import provenance
    text = json.dumps({"sae": self.to_dict(), "toy": toy_digest,
                       "code": provenance.engine_code("sae.grid"),
                       "versions": provenance.numeric_versions(),
                       "jax": provenance.jax_settings()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
