"""Checkpoints of a sweep in training: the whole grid's state, saved between stages of the
one compiled training (`sweep.run(checkpoint_dir=...)`), through orbax-checkpoint.

A checkpoint holds the training state of every model (parameters and AdamW state, as the
sharded arrays the program carries), the loss history so far and the log window reached,
plus a JSON identity: the spec (and its digest, which covers the engine's code and the
numeric libraries' versions) and the layout. orbax writes each checkpoint to a temporary
folder and renames it when complete, and the two latest are kept, so a kill during a
write leaves the previous one usable; on several hosts every process writes its own
shards of the same checkpoint. A checkpoint is trusted only if its identity is the run's
and it reads back whole; otherwise it is ignored with one line saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, NamedTuple

import jax
import numpy as np

from superpos_jax.plan import Plan, _gib
from superpos_jax.spec import SpecError, SweepSpec, _engine_source_hash

# Checkpoints kept: the latest and the one before it (in case the latest is cut short).
KEEP = 2
FORMAT = 1


class Restored(NamedTuple):
  windows: int  # log windows done
  states: Any  # the grid's training state (as `sweep.Stages.init` returns it)
  history: np.ndarray  # [windows, A, chunks, C] loss history so far


def identity(plan: Plan) -> dict:
  """What a checkpoint must match to be resumed: spec, engine code, layout (as JSON reads
  it back: lists, not tuples)."""
  return json.loads(json.dumps({"format": FORMAT, "spec": plan.spec.to_dict(), "spec_digest": plan.spec.digest(),
          "engine_code": _engine_source_hash(),
          "layout": {k: v for k, v in plan.describe().items()
                     if k not in ("autotune", "estimated_bytes")} | {"block_bytes": plan.block_bytes}}))


def _mismatch(stored: dict, wanted: dict) -> str | None:
  """Why a checkpoint of identity `stored` cannot resume a run of `wanted` (None: it can)."""
  if stored.get("format") != wanted["format"]:
    return f"it has format {stored.get('format')!r}, not {wanted['format']}"
  if stored.get("spec") != wanted["spec"]:
    return "it is of another spec"
  if stored.get("engine_code") != wanted["engine_code"]:
    return "it was written by other engine code"
  if stored.get("spec_digest") != wanted["spec_digest"]:
    return "it was written with other versions of jax, jaxlib or optax"
  if stored.get("layout") != wanted["layout"]:
    diff = sorted(k for k in wanted["layout"] if stored.get("layout", {}).get(k) != wanted["layout"][k])
    return f"it is of another layout ({', '.join(diff)})"
  return None


def state_bytes(plan: Plan) -> int:
  """Bytes of one checkpoint: every chunk slot's parameters and AdamW moments (3 copies),
  its step counter, and the whole loss history."""
  spec = plan.spec
  params = spec.m * spec.n + spec.n + (spec.n * spec.m if spec.model == "abs" else 0)
  slots = len(spec.activations) * plan.n_chunks * plan.chunk_size
  return slots * 4 * (3 * params + 2 + len(spec.history_steps()))


def check_room(directory: str, plan: Plan) -> None:
  """A one-line SpecError, before training, where `directory` cannot hold `KEEP + 1`
  checkpoints of `plan` (the kept ones and the one being written)."""
  need = (KEEP + 1) * state_bytes(plan)
  probe = directory
  while probe and not os.path.exists(probe):
    probe = os.path.dirname(probe)
  try:
    free = shutil.disk_usage(probe or ".").free
  except OSError as e:
    raise SpecError(f"checkpoint folder {directory}: cannot read its free space ({e.strerror or e})") from None
  if free < need:
    raise SpecError(f"checkpoint folder {directory} has {_gib(free)} free, its checkpoints need "
                    f"about {_gib(need)}: free space, choose another folder, or --no-checkpoint")


class Checkpointer:
  """The checkpoints of one run of `plan` in `directory` (orbax `CheckpointManager`)."""

  def __init__(self, directory: str, plan: Plan):
    import orbax.checkpoint as ocp
    self.ocp = ocp
    self.directory = os.path.abspath(directory)
    self.plan = plan
    self.identity = identity(plan)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=KEEP, create=True, enable_async_checkpointing=False))

  def save(self, windows: int, states, history: np.ndarray) -> None:
    """Saves the state after `windows` log windows (complete or not at all)."""
    args = self.ocp.args.Composite(
        state=self.ocp.args.StandardSave({"states": states, "history": np.asarray(history)}),
        identity=self.ocp.args.JsonSave(dict(self.identity, windows=int(windows))))
    self.manager.save(int(windows), args=args, force=True)
    self.manager.wait_until_finished()

  def restore(self, like_states, history_like: np.ndarray) -> Restored | None:
    """The latest trustworthy checkpoint, or None (after one line on stderr saying why
    a checkpoint that is there was not used). `like_states`: arrays of the states' shapes
    and shardings (e.g. the initial states); `history_like`: `[0, A, chunks, C]`."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      why = self._restore_step(step, like_states, history_like)
      if isinstance(why, Restored):
        return why
      print(f"warning: checkpoint {os.path.join(self.directory, str(step))} ignored: {why}; "
            f"{'trying the one before' if step != min(self.manager.all_steps()) else 'training from step 0'}",
            file=sys.stderr)
    return None

  def _restore_step(self, step: int, like_states, history_like) -> Restored | str:
    ocp = self.ocp
    try:
      stored = self.manager.restore(step, args=ocp.args.Composite(identity=ocp.args.JsonRestore()))["identity"]
    except Exception as e:  # noqa: BLE001 (a cut or corrupt file fails in many ways)
      return f"its identity cannot be read ({type(e).__name__})"
    why = _mismatch(stored or {}, self.identity)
    if why:
      return why
    windows = int(stored.get("windows", -1))
    shape = (windows,) + tuple(history_like.shape[1:])
    abstract = {"states": jax.tree.map(ocp.utils.to_shape_dtype_struct, like_states),
                "history": jax.ShapeDtypeStruct(shape, history_like.dtype)}
    try:
      tree = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
      history = np.asarray(tree["history"])
    except Exception as e:  # noqa: BLE001
      return f"it cannot be read back whole ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if history.shape != shape:
      return f"its history has shape {history.shape}, not {shape}"
    return Restored(windows, tree["states"], history)

  def remove(self) -> None:
    """Removes every checkpoint of this run (once its result is saved)."""
    self.manager.close()
    remove(self.directory)


def agree_windows(windows: int) -> int:
  """The log window every process resumes from: this process's where it runs alone; on
  several hosts the common one, or -1 (start over) where the processes found different
  checkpoints (or some found none)."""
  if jax.process_count() == 1:
    return windows
  from jax.experimental import multihost_utils
  found = np.asarray(multihost_utils.process_allgather(np.asarray([windows], np.int32)))
  if (found == found.flat[0]).all():
    return int(found.flat[0])
  print(f"warning: the processes found checkpoints of different steps ({found.ravel().tolist()}); "
        f"training from step 0", file=sys.stderr)
  return -1


def remove(directory: str) -> None:
  """Removes a run's checkpoint folder (process 0 only on several hosts)."""
  if jax.process_index() == 0:
    shutil.rmtree(directory, ignore_errors=True)
