"""What a plan reads of a grid: the `GridSpec` protocol, which the toy grid's `SweepSpec`
and the SAE stage's `sae.grid.SAEGrid` implement, and the numbers it answers with
(`LayoutFacts`). Pure Python: nothing here computes.

`plan.py` lays any grid out from these alone (chunks, padding, devices, memory), and
`program.py`, `staged.py`, `checkpoint.py`, `cache.py` and `launch.py` read nothing else
of a spec, so a second kind of grid gets the toy grid's layout, staging, checkpoints,
cache and rescue by implementing this protocol (and a `program.Kind`), not by copying them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable


class LayoutFacts(NamedTuple):
  """The numbers a plan lays a grid out from.

  A grid is `groups` static groups (compiled one after another: the toy grid's
  activations, the SAE grid's dictionary multiples) of `points` points each; a chunk is
  a few points of one group trained together, and every point of a chunk has the same
  shapes.
  """

  groups: int  # static groups: activations; dictionary multiples
  points: int  # points per group
  # Seeds whose points read ONE draw of uniforms per step (points ordered seed-major,
  # `points // shared_seeds` per seed); 0: every point draws its own stream.
  shared_seeds: int
  cache_bytes: int  # bytes of one point's training step that a CPU chunk keeps in cache
  min_chunk: int  # points per CPU chunk at least
  working_bytes: int  # one point's working set: its step or its evaluation, the larger
  once_bytes: int  # alive once per device beside the chunks (the evaluation set's draw)
  state_bytes: int  # one point's training state and outputs (of its largest group)


@runtime_checkable
class GridSpec(Protocol):
  """A grid `plan.make_plan` can lay out and the engine can train, cache and checkpoint.

  Attributes:
    n: uniforms per example: a step draws `[n, batch_size]` per stream.
    m: hidden dimensions (with n, the model size `plan.choose_devices` reads).
    batch_size: examples per step.
    steps, log_every: the training's length and its loss-history window.
    num_models: models trained (what model-steps/s counts).
  """

  n: int
  m: int
  batch_size: int
  steps: int
  log_every: int

  @property
  def num_models(self) -> int: ...

  def history_steps(self) -> Any:
    """Step count at the end of each loss-history window."""

  def layout_facts(self) -> LayoutFacts:
    """The numbers a plan lays the grid out from."""

  def static_key(self) -> tuple:
    """Everything the compiled program depends on but the registry entries: hashable,
    with the swept values left out (they are the program's arguments)."""

  def registry_entries(self) -> tuple:
    """The registered definitions the program is built from, compared by identity (a
    name re-registered with another definition must not reuse a compiled program)."""

  def identity(self) -> dict[str, Any]:
    """What decides the numbers (`provenance.PARTS`): the key of caches and checkpoints."""

  def digest(self) -> str:
    """Short hash of `identity()`."""
