"""How a grid is laid out for training: chunks, padding, devices, memory, precision.

The sweep trains a grid's points in *chunks* of models that run together in one
`lax.scan` over steps (`lax.map` over chunks keeps a chunk's working set in cache and
bounds memory), and shards the chunks over devices. `make_plan` derives that layout from
a spec and the kind of device; nothing in it changes the numbers beyond float rounding
(tests check it). The layout depends on the device kind:

- CPU: cache-sized chunks (`CACHE_BYTES`, measured on the 2-core CPU), many per device,
  run one after another; host devices share one RAM, so the memory estimate counts every
  device's chunk at once.
- GPU, TPU: one chunk per device holding all of the device's share of an activation's
  points (as large as the device-memory budget allows): a step is a few large kernels
  instead of hundreds of small ones, one loop iteration instead of a loop over chunks.

`autotune.py` measures candidate layouts instead of deriving one.

A grid is whatever implements `gridspec.GridSpec`: the toy `SweepSpec` (activations, each
a group of points) and the SAE stage's `sae.grid.SAEGrid` (dictionary multiples, each a
group of toy models with their SAEs). The plan reads only its `LayoutFacts`, static key
and registry entries, so both get one chunk rule, padding, memory budget and precision.

Points are ordered (seed, density, importance, lr, weight decay, init scale) within an
activation. With shared random numbers (`rng="shared"`) every chunk reads its seed's one
`[n, B]` batch of uniforms per step. Where a seed has fewer points than a cache-sized
chunk (n=10: 7 densities per seed), chunks span seeds instead (`Plan.span_seeds`), and
each model indexes its own seed's row of the step's `[S, n, B]` draw: fuller chunks and
less padding for one transposed copy of each block's draw.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from superpos_jax import model
from superpos_jax.errors import first_line
from superpos_jax.gridspec import GridSpec, LayoutFacts
from superpos_jax.spec import SpecError, check_spec
from superpos_jax.train import DRAW_BLOCK_BYTES, block_steps

# Matrix-product precisions a run may ask for (`jax.default_matmul_precision` names).
# "float32" is exact float32 on every backend (the default); "tensorfloat32" and
# "bfloat16" trade mantissa bits for speed on GPUs/TPUs; "default" is the backend's own
# default (bfloat16 passes on TPU, TF32 on recent NVIDIA GPUs, float32 on CPU).
PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")

# Bytes of per-chunk working set that keep a training step inside a core's L2 cache:
# measured on the 2-core CPU, n=2 models ran 2x faster in chunks of ~128 than all at once,
# n=10 best in chunks of 16.
CACHE_BYTES = 2**20
# Points per CPU chunk at least, of the toy grid (`LayoutFacts.min_chunk`).
MIN_CHUNK = model.MIN_CHUNK


def facts(spec: GridSpec) -> LayoutFacts:
  """`spec.layout_facts()` (`gridspec.GridSpec`); a family that cannot initialise fails here."""
  try:
    return spec.layout_facts()
  except Exception as e:
    if isinstance(e, SpecError):
      raise
    raise SpecError(f"model family {getattr(spec, 'model', '?')!r} failed to initialise "
                    f"(n={spec.n}, m={spec.m}): {first_line(e)}") from None


def model_step_bytes(spec: GridSpec) -> int:
  """Approximate working-set bytes of one point of a chunk: its training step or its
  evaluation, whichever is larger (they are not alive together)."""
  return facts(spec).working_bytes


def step_draw_bytes(spec: GridSpec, chunk_size: int, span_seeds: bool) -> int:
  """Bytes of the uniforms alive together for one step: one `[n, B]` batch per seed
  (shared random numbers; twice when chunks span seeds, whose block of draws is also
  transposed to steps-first), or one per point of a chunk (per-point streams)."""
  seeds = facts(spec).shared_seeds
  streams = seeds * (2 if span_seeds else 1) if seeds else chunk_size
  return 4 * spec.n * spec.batch_size * streams


def draw_block_bytes(spec: GridSpec, chunk_size: int, span_seeds: bool,
                     block_bytes: int = DRAW_BLOCK_BYTES) -> int:
  """Bytes of one block of uniforms as the program really draws it: `train.block_steps`
  steps of `step_draw_bytes` (a block may exceed `block_bytes` when one step does)."""
  step = step_draw_bytes(spec, chunk_size, span_seeds)
  return step * block_steps(min(spec.log_every, spec.steps), step, block_bytes)


def _draw_live_bytes(spec: GridSpec, chunk_size: int, span_seeds: bool) -> int:
  """A block of uniforms while it is drawn: its random bits and the floats made of them."""
  return 2 * draw_block_bytes(spec, chunk_size, span_seeds)


def estimate_memory(spec: GridSpec, chunk_size: int, *, devices: int = 1,
                    platform: str = "cpu", span_seeds: bool = False) -> int:
  """Approximate peak bytes of a run, compared with the memory budget.

  On CPU the host's devices share one RAM: every device's chunk working set and random
  draw are alive at once, plus every point's state and outputs. On an accelerator each
  device has its own memory: the figure is one device's (its chunk, its draw, its share
  of the states), compared with one device's budget.
  """
  f = facts(spec)
  working = (chunk_size * f.working_bytes + _draw_live_bytes(spec, chunk_size, span_seeds)
             + f.once_bytes)
  states = 2 * f.groups * f.points * f.state_bytes
  if platform == "cpu":
    return devices * working + states
  return working + -(-states // devices)


def _cache_chunk(spec: GridSpec) -> int:
  """Points per chunk whose step working set fits `CACHE_BYTES` (at least `min_chunk`)."""
  f = facts(spec)
  return max(CACHE_BYTES // f.cache_bytes, f.min_chunk)


def _points_per_seed(spec: GridSpec) -> int:
  """Grid points of one group and one seed (shared random numbers)."""
  f = facts(spec)
  return f.points // f.shared_seeds


def spans_seeds(spec: GridSpec, platform: str = "cpu") -> bool:
  """Whether chunks should span seeds by default: shared random numbers, several seeds,
  and, on CPU, fewer points per seed than a cache-sized chunk (chunks cut per seed would
  be small and padded: n=10, 7 densities x 3 seeds on 2 devices, chunks of 4 filled 21 of
  24 slots; spanning seeds, chunks of 11 fill 21 of 22). On an accelerator always, so
  that one chunk can hold every seed's points."""
  if facts(spec).shared_seeds < 2:
    return False
  return platform != "cpu" or _points_per_seed(spec) < _cache_chunk(spec)


def chunk_groups(spec: GridSpec, span_seeds: bool) -> tuple[int, int]:
  """`(groups, points per group)` that chunks are cut from, per static group (activation):
  one group per seed with shared random numbers (a chunk draws for one seed) unless
  chunks span seeds, else one group."""
  f = facts(spec)
  if f.shared_seeds and not span_seeds:
    return (f.shared_seeds, f.points // f.shared_seeds)
  return (1, f.points)


def gib(nbytes: float) -> str:
  """A byte count in the largest unit that keeps it >= 1 (`"512 B"`, `"1.50 GiB"`)."""
  for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if abs(nbytes) >= size:
      return f"{nbytes / size:,.2f} {unit}"
  return f"{int(nbytes)} B"


def check_memory_budget(max_memory) -> int | None:
  """`max_memory` as a positive int of bytes (None: no limit), else a one-line SpecError."""
  if max_memory is None:
    return None
  if (isinstance(max_memory, bool) or not isinstance(max_memory, (int, float, np.number))
      or not max_memory >= 1  # an int is finite (np.isfinite refuses one beyond int64)
      or not (isinstance(max_memory, (int, np.integer)) or np.isfinite(max_memory))):
    raise SpecError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
  return int(max_memory)


def check_devices(devices) -> tuple:
  """`devices` as a non-empty tuple of `jax.Device`, else a one-line SpecError."""
  import jax
  if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
    raise SpecError(f"devices must be a sequence of jax.Device (e.g. jax.devices('cpu')), "
                    f"got {devices!r}")
  devices = tuple(devices)
  bad = [d for d in devices if not isinstance(d, jax.Device)]
  if bad or not devices:
    raise SpecError(f"devices must be a non-empty sequence of jax.Device (e.g. "
                    f"jax.devices('cpu')), got {bad[0] if bad else devices!r}")
  return devices


def choose_chunk_size(spec: GridSpec, max_memory: int | None = None, devices: int = 1,
                      span_seeds: bool | None = None, platform: str = "cpu") -> int:
  """Models per chunk for the device kind, shrunk to fit `max_memory` bytes, and cut so
  that the chunks fill every device with as little padding as possible.

  CPU: cache-sized (`CACHE_BYTES`). Accelerators: a device's whole share of an
  activation's points in one chunk, halved only while it does not fit the budget.
  Padding matters: the grid's chunks are padded to a whole number per device, and a pad
  chunk costs as much as a real one (n=200, 20 models, 2 devices: chunks of 7 gave 3
  chunks padded to 4, 29% wasted; chunks of 2 waste nothing and ran 1.45x faster).

  Raises:
    SpecError: if even one model per chunk would exceed `max_memory`.
  """
  if span_seeds is None:
    span_seeds = spans_seeds(spec, platform)
  groups, q = chunk_groups(spec, span_seeds)
  share = -(-groups * q // devices)  # every device gets work
  target = min(q, share) if platform != "cpu" else min(_cache_chunk(spec), q, share)
  estimate = lambda c: estimate_memory(spec, c, devices=devices, platform=platform,
                                       span_seeds=span_seeds)
  if max_memory is not None:
    while target > 1 and estimate(target) > max_memory:
      target //= 2
    if estimate(target) > max_memory:
      raise SpecError(
          f"the grid needs about {gib(estimate(1))} even one model "
          f"at a time, over the {gib(max_memory)} memory budget: shrink the grid or batch, "
          f"or raise the budget (--max-memory, in GiB)")
  # k chunks per group, chunks at most halved from the target: fewest padded slots.
  k0 = -(-q // target)

  def slots(k):
    return -(-groups * k // devices) * devices * -(-q // k)

  best = min(range(k0, min(2 * k0, q) + 1), key=lambda k: (slots(k), k))
  return -(-q // best)


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
  """The layout of one run. Two plans are equal (and share a compiled program) when their
  spec's static settings (`static_key`), registered definitions (the toy grid's
  activations, model and data families and optimiser; the SAE grid's data family: the
  entries, by identity), chunk size, devices, progress flag, draw block, seed spanning
  and precision are equal: swept values are arguments of the program, not part of it.

  Attributes:
    spec: the grid (`gridspec.GridSpec`: a toy `SweepSpec`, an `sae.grid.SAEGrid`; the
      program reads only its static settings, `static_key`).
    chunk_size: models trained together in one scan.
    devices: the chunks are sharded over these.
    progress: report progress through a host callback once per log window and device.
    block_bytes: most bytes of uniforms a chunk draws at once (`DRAW_BLOCK_BYTES`).
    span_seeds: chunks are cut across seeds, each model reading its own seed's uniforms
      (shared random numbers only; `spans_seeds` chooses it by default).
    precision: the matrix products' precision, one of `PRECISIONS` ("float32": exact).
    autotuned: how `autotune.autotune` chose this layout (candidates and their measured
      rates), None otherwise; not part of the program.
  """

  spec: GridSpec
  chunk_size: int
  devices: tuple
  progress: bool = False
  block_bytes: int = DRAW_BLOCK_BYTES
  span_seeds: bool = False
  precision: str = "float32"
  autotuned: dict | None = None

  def __post_init__(self):
    # The registry entries themselves (compared by identity), not only their names: a
    # name re-registered with another definition must not reuse the old program.
    object.__setattr__(self, "_entries", self.spec.registry_entries())

  def _key(self):
    return (self.spec.static_key(), self._entries, self.chunk_size, self.devices,
            self.progress, self.block_bytes, self.span_seeds, self.precision)

  def __eq__(self, other):
    return isinstance(other, Plan) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  @property
  def platform(self) -> str:
    """The devices' platform ("cpu", "gpu", "tpu"); "cpu" for stand-in devices."""
    return getattr(self.devices[0], "platform", "cpu")

  @property
  def facts(self) -> LayoutFacts:
    """What the plan reads of its grid (`gridspec.LayoutFacts`)."""
    return facts(self.spec)

  @property
  def n_chunks(self) -> int:
    """Chunks per activation, padded to a whole number per device."""
    groups, q = chunk_groups(self.spec, self.span_seeds)
    chunks = groups * -(-q // self.chunk_size)
    return -(-chunks // len(self.devices)) * len(self.devices)

  @property
  def estimated_bytes(self) -> int:
    """`estimate_memory` of this layout (one device's on an accelerator, the host's on CPU)."""
    return estimate_memory(self.spec, self.chunk_size, devices=len(self.devices),
                           platform=self.platform, span_seeds=self.span_seeds)

  @property
  def step_draw_bytes(self) -> int:
    """`step_draw_bytes` of this layout."""
    return step_draw_bytes(self.spec, self.chunk_size, self.span_seeds)

  def describe(self) -> dict:
    """The layout as the result's metadata records it."""
    return {"chunk_size": self.chunk_size, "devices": len(self.devices),
            "platform": self.platform, "span_seeds": self.span_seeds,
            "chunks_per_activation": self.n_chunks, "precision": self.precision,
            "estimated_bytes": self.estimated_bytes,
            **({"autotune": self.autotuned} if self.autotuned else {})}

  def chunk_seeds(self) -> np.ndarray:
    """`[n_chunks, chunk_size]` seed index of every chunk slot (shared random numbers;
    equal along a chunk unless chunks span seeds; per-point streams: unused, 0)."""
    if not facts(self.spec).shared_seeds:
      return np.zeros((self.n_chunks, self.chunk_size), np.int32)
    return (self.chunk_index() // _points_per_seed(self.spec)).astype(np.int32)

  def chunk_index(self) -> np.ndarray:
    """`[n_chunks, chunk_size]` flat point index (into seeds x points of a seed) of every
    chunk slot; pad slots repeat the last point."""
    groups, q = chunk_groups(self.spec, self.span_seeds)
    C = self.chunk_size
    per_group = -(-q // C)
    if groups > 1:
      local = np.minimum(np.arange(per_group * C), q - 1).reshape(per_group, C)
      idx = (np.arange(groups)[:, None, None] * q + local[None]).reshape(-1, C)
    else:
      idx = np.minimum(np.arange(per_group * C), q - 1).reshape(-1, C)
    pad = np.repeat(idx[-1:], self.n_chunks - idx.shape[0], axis=0)
    return np.concatenate([idx, pad])

  def first_slots(self) -> np.ndarray:
    """For every point, its first slot in the flattened `chunk_index` (pads dropped)."""
    return np.unique(self.chunk_index().ravel(), return_index=True)[1]


def static_key(spec: GridSpec) -> tuple:
  """Everything about `spec` that the compiled program depends on (`spec.static_key()`:
  every field but the swept values, and the swept axes' lengths)."""
  return spec.static_key()


# Models at least this large (n * m) train on ONE host CPU device. With several host
# devices, XLA CPU's YNNPACK dot fusions leak a few hundred bytes per execution
# (benchmarks/xla_ynn_dot_leak.py): the 7-activation n=200 grid grew ~660 KB per step
# (7 GB over 10,000 steps). Their matmuls use both cores from one device anyway: one
# device ran it at 1.8k model-steps/s with flat memory, two at 2.4k, two with the
# leaking fusion off at 1.3k (2-core CPU). Small models need the devices for speed
# (n=2: 441k vs 209k model-steps/s) and their tiny dots showed no growth (tested).
ONE_CPU_DEVICE_MIN_NM = 1_000


def choose_devices(spec: GridSpec, devices: Sequence) -> tuple:
  """The devices a grid of `spec` trains on by default: all of them, except on one
  host's CPU for models of at least `ONE_CPU_DEVICE_MIN_NM` weights, which get one
  (see above)."""
  devices = tuple(devices)
  one_host = len({getattr(d, "process_index", 0) for d in devices}) == 1
  if (devices and one_host and devices[0].platform == "cpu"
      and spec.n * spec.m >= ONE_CPU_DEVICE_MIN_NM):
    return devices[:1]
  return devices


def check_grid(spec) -> GridSpec:
  """`spec` if it is a grid a plan can lay out (`gridspec.GridSpec`: a toy `SweepSpec`,
  an SAE grid), else a one-line SpecError (`spec.check_spec`'s)."""
  return spec if isinstance(spec, GridSpec) else check_spec(spec)


def check_precision(precision) -> str:
  """`precision` if it is one of `PRECISIONS`, else a one-line SpecError."""
  if precision not in PRECISIONS:
    raise SpecError(f"matmul precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
  return precision


def make_plan(spec: GridSpec, *, devices: Sequence, chunk_size: int | None = None,
              max_memory: int | None = None, progress: bool = False,
              span_seeds: bool | None = None, precision: str = "float32") -> Plan:
  """The plan of a run: chunk size (chosen for the device kind, or checked against
  `max_memory`), devices, seed spanning and matmul precision.

  `span_seeds`: cut chunks across seeds (shared random numbers); None: `spans_seeds`.
  Either way every model reads the same uniforms, so the numbers agree to float rounding.
  `max_memory`: bytes of the host (CPU) or of one device (accelerators).

  Raises:
    SpecError: for a bad spec, devices, `chunk_size` or precision, or a grid that cannot
      fit `max_memory` bytes.
  """
  spec = check_grid(spec)
  devices = check_devices(devices)
  max_memory = check_memory_budget(max_memory)
  precision = check_precision(precision)
  platform = devices[0].platform
  span_seeds = spans_seeds(spec, platform) if span_seeds is None else bool(span_seeds)
  span_seeds = span_seeds and facts(spec).shared_seeds > 0
  if chunk_size is None:
    chunk_size = choose_chunk_size(spec, max_memory, len(devices), span_seeds, platform)
  elif not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
    raise SpecError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  layout = Plan(spec, int(chunk_size), devices, bool(progress), DRAW_BLOCK_BYTES, span_seeds,
                precision)
  if max_memory is not None and layout.estimated_bytes > max_memory:
    raise SpecError(f"chunk_size={chunk_size} needs about {gib(layout.estimated_bytes)}, "
                    f"over the {gib(max_memory)} budget")
  return layout
