"""Checkpoints of a sweep in training: the whole grid's state, saved between stages of the
one compiled training (`sweep.run(checkpoint_dir=...)`), through orbax-checkpoint.

A checkpoint holds every grid point's training state (parameters and optimiser state)
and loss history in GRID order, one row per point of a group (`POINT_AXES` order,
pad slots dropped), so it does not depend on the layout that wrote it: a run killed on
one layout (core count, chunk size, autotune choice, one host or several) resumes on
another, equal to an uninterrupted run to float rounding, and on the same layout bit for
bit. Beside the arrays, a JSON record says exactly what they are:

  identity   the run's identity (`provenance.identity`: spec, engine code, registered
             definitions, library versions, JAX settings) and its matmul precision
  content    log windows done, whether the training is finished (the partial last
             window included), the step reached and the history's length
  layout     the layout that wrote it (a resumed run prefers it: `stored_layout`)

Checkpoints are numbered by a save counter that only grows (one more than the largest
in the folder), so a save can never meet an existing step, whatever earlier runs left.
orbax writes each to a temporary folder and renames it when complete, the two latest are
kept, and a checkpoint that cannot resume the run (another identity, labels that
disagree with its arrays, files cut short or damaged) is ignored with one line, then
removed at the run's first save. On several hosts every process gathers the whole state
and process 0's decisions (when to save, what to resume) are every process's.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, NamedTuple

import jax
import numpy as np

from superpos_jax import program, provenance
from superpos_jax.plan import Plan, gib
from superpos_jax.spec import SpecError

# Checkpoints kept: the latest and the one before it (in case the latest is cut short).
KEEP = 2
FORMAT = 2


class Restored(NamedTuple):
  windows: int  # full log windows done
  finished: bool  # every step done, the partial last window too
  states: Any  # the grid's training state, laid out for this run's plan
  history: np.ndarray  # [T, groups, chunks, C, ...] loss history so far, in this plan's slots
  layout: dict  # the layout of the run that wrote it
  number: int  # its save counter


def layout_record(plan: Plan) -> dict:
  """What a checkpoint records of the layout that wrote it."""
  return {"chunk_size": plan.chunk_size, "span_seeds": plan.span_seeds,
          "devices": len(plan.devices), "platform": plan.platform,
          "processes": len({getattr(d, "process_index", 0) for d in plan.devices})}


def same_layout(a: dict, b: dict) -> bool:
  """Whether two layout records train to the same numbers bit for bit."""
  keys = ("chunk_size", "span_seeds", "devices", "platform", "processes")
  return all(a.get(k) == b.get(k) for k in keys)


def describe_layout(layout: dict) -> str:
  """`chunks of 8 on 2 cpu device(s)` (`, spanning seeds`, `in 2 processes`)."""
  span = " spanning seeds" if layout.get("span_seeds") else ""
  procs = layout.get("processes", 1)
  return (f"chunks of {layout.get('chunk_size')}{span} on {layout.get('devices')} "
          f"{layout.get('platform')} device(s){f' in {procs} processes' if procs != 1 else ''}")


def run_identity(spec, precision: str) -> dict:
  return {"format": FORMAT, "identity": spec.identity(), "precision": precision}


def mismatch(stored: Any, wanted: dict) -> str | None:
  """Why a checkpoint whose record is `stored` cannot resume a run of `wanted`
  (`run_identity`), or None."""
  if not isinstance(stored, dict):
    return "its record is not a JSON object"
  if stored.get("format") != wanted["format"]:
    return f"it has format {stored.get('format')!r}, not {wanted['format']}"
  why = provenance.mismatch(stored.get("identity"), wanted["identity"])
  if why:
    return why
  if stored.get("precision") != wanted["precision"]:
    return f"it was trained with {stored.get('precision')} matmuls, not {wanted['precision']}"
  return None


def content_error(stored: dict, spec) -> str | None:
  """Whether a record's content labels agree with each other and with the spec."""
  n_windows, remainder = divmod(spec.steps, spec.log_every)
  w, finished, length = stored.get("windows"), stored.get("finished"), stored.get("history")
  if not (isinstance(w, int) and isinstance(finished, bool) and isinstance(length, int)):
    return "its content is not labelled"
  if not 0 <= w <= n_windows or (finished and w != n_windows):
    return f"it says {w} log windows done of {n_windows}{' and finished' if finished else ''}"
  if length != w + (1 if finished and remainder else 0):
    return f"its history holds {length} windows, its labels say {w}{' + the last' if finished else ''}"
  return None


def steps_done(spec, windows: int, finished: bool) -> int:
  return spec.steps if finished else min(windows * spec.log_every, spec.steps)


def _gathered(x) -> np.ndarray:
  """The whole of `x` on this host (its shards gathered from every process)."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_grid(plan: Plan, states, history: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
  """The training state's leaves `[chunks, C, ...]` and the history `[T, groups, chunks,
  C, ...]` in grid order: `[P, ...]` and `[T, groups, P, ...]` (P points per group, pads
  dropped; a toy model's history has nothing after C, its SAEs' one loss each)."""
  first = plan.first_slots()
  leaves = [_gathered(x) for x in jax.tree.leaves(states)]
  slots = plan.n_chunks * plan.chunk_size
  grid = [x.reshape((slots,) + x.shape[2:])[first] for x in leaves]
  hist = np.asarray(history)
  return grid, hist.reshape(hist.shape[:2] + (slots,) + hist.shape[4:])[:, :, first]


def from_grid(plan: Plan, like_states, leaves: list[np.ndarray], history: np.ndarray):
  """Inverse of `to_grid` for `plan`: states laid out (and sharded) like `like_states`,
  the history `[T, groups, chunks, C, ...]` in `plan`'s slots."""
  index = plan.chunk_index()  # [chunks, C] point of every slot; pads repeat a point
  like, treedef = jax.tree.flatten(like_states)

  def place(x, target):
    slot = x[index]  # [chunks, C, ...]
    return jax.make_array_from_callback(slot.shape, target.sharding, lambda i: slot[i])

  states = jax.tree.unflatten(treedef, [place(x, t) for x, t in zip(leaves, like)])
  return states, history[:, :, index]


def grid_shapes(plan: Plan, like_states) -> list[tuple[tuple[int, ...], str]]:
  """(shape, dtype) of every leaf in grid order."""
  points = plan.first_slots().size
  return [((points,) + tuple(x.shape[2:]), str(x.dtype)) for x in jax.tree.leaves(like_states)]


def state_bytes(plan: Plan) -> int:
  """Bytes of one checkpoint: every point's training state (as the plan's init program
  lays it out, whatever the family and optimiser: every group's leaves) and its whole
  loss history."""
  import jax.numpy as jnp
  spec = plan.spec
  stages = program.stage_programs(plan, 1, False)
  like = jax.eval_shape(stages.init, *program.program_inputs(spec))
  per_slot = sum(int(np.prod(x.shape[2:])) * jnp.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(like))
  history = 4 * len(spec.history_steps()) * int(np.prod(_history_tail(spec)))
  return plan.first_slots().size * (per_slot + plan.facts.groups * history)


def _history_tail(spec) -> tuple[int, ...]:
  return program.kind_of(spec).history_tail(spec)


def check_room(directory: str, plan: Plan) -> None:
  """A one-line SpecError, before training, where `directory` cannot hold `KEEP + 1`
  checkpoints of `plan` (the kept ones and the one being written); on several hosts,
  where any process's folder cannot."""
  need = (KEEP + 1) * state_bytes(plan)
  probe = directory
  while probe and not os.path.exists(probe):
    probe = os.path.dirname(probe)
  try:
    free = shutil.disk_usage(probe or ".").free
    why = None
  except OSError as e:
    free, why = 0, f"cannot read its free space ({e.strerror or e})"
  from superpos_jax.host import agreed
  if agreed(free >= need and why is None, "all"):
    return
  if why:
    raise SpecError(f"checkpoint folder {directory}: {why}")
  if free < need:
    raise SpecError(f"checkpoint folder {directory} has {gib(free)} free, its checkpoints need "
                    f"about {gib(need)}: free space, choose another folder, or --no-checkpoint")
  raise SpecError(f"checkpoint folder {directory}: another process's folder has too little "
                  f"room for its checkpoints (about {gib(need)}): free space or --no-checkpoint")


def _manager(directory: str):
  import orbax.checkpoint as ocp
  return ocp, ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(
          max_to_keep=KEEP, create=True, enable_async_checkpointing=False,
          cleanup_tmp_directories=True))


def _read_record(ocp, manager, number: int) -> Any:
  return manager.restore(number, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]


def stored_layout(directory: str, spec, precision: str = "float32") -> dict | None:
  """The layout recorded by the latest checkpoint in `directory` that is of this run
  (`spec` and `precision`), or None; on several hosts, process 0's answer."""
  found = None
  if os.path.isdir(directory):
    ocp, manager = _manager(directory)
    wanted = run_identity(spec, precision)
    for number in sorted(manager.all_steps(), reverse=True):
      try:
        stored = _read_record(ocp, manager, number)
      except Exception:  # noqa: BLE001 (a damaged record: not this run's to trust)
        continue
      if mismatch(stored, wanted) is None and content_error(stored, spec) is None \
          and isinstance(stored.get("layout"), dict):
        found = stored["layout"]
        break
    manager.close()
  from superpos_jax.host import broadcast
  chunk, span, devices = broadcast([found["chunk_size"] if found else 0,
                                    bool(found and found.get("span_seeds")),
                                    found["devices"] if found else 0])
  if not chunk:
    return None
  return dict(found or {}, chunk_size=chunk, span_seeds=bool(span), devices=devices)


class Checkpointer:
  """The checkpoints of one run of `plan` in `directory` (orbax `CheckpointManager`)."""

  def __init__(self, directory: str, plan: Plan):
    self.ocp, self.manager = _manager(directory)
    self.directory = os.path.abspath(directory)
    self.plan = plan
    self.wanted = run_identity(plan.spec, plan.precision)
    self.ignored: list[int] = []

  def save(self, windows: int, finished: bool, states, history: np.ndarray) -> int:
    """Saves the state after `windows` full log windows (and the partial last one where
    `finished`) under a new number; complete or not at all. Returns the number."""
    from superpos_jax import faults
    from superpos_jax.host import agreed
    ocp, spec = self.ocp, self.plan.spec
    leaves, hist = to_grid(self.plan, states, history)
    for number in self.ignored:  # checkpoints that could not resume this run
      try:
        self.manager.delete(number)
      except Exception:  # noqa: BLE001 (already gone, or another process's to delete)
        pass
    self.ignored = []
    number = agreed(max(self.manager.all_steps(), default=0) + 1, "max")
    record = dict(self.wanted, windows=int(windows), finished=bool(finished),
                  step=steps_done(spec, windows, finished), history=int(hist.shape[0]),
                  layout=layout_record(self.plan), leaves=len(leaves))
    tree = {"leaves": {f"{i:04d}": x for i, x in enumerate(leaves)}, "history": hist}
    faults.point("checkpoint.saving")
    self.manager.save(number, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                      record=ocp.args.JsonSave(record)),
                      force=True)
    self.manager.wait_until_finished()
    faults.point("checkpoint.saved")
    return number

  def restore(self, like_states) -> Restored | None:
    """The latest checkpoint that can resume this run, or None (after one line on stderr
    for each checkpoint that is there but cannot). `like_states`: the states as this
    run's init program lays them out (shapes, dtypes, shardings)."""
    numbers = sorted(self.manager.all_steps(), reverse=True)
    for number in numbers:
      got = self._restore(number, like_states)
      if isinstance(got, Restored):
        return got
      self.ignored.append(number)
      print(f"warning: checkpoint {os.path.join(self.directory, str(number))} ignored: {got}; "
            f"{'trying the one before' if number != numbers[-1] else 'training from step 0'}",
            file=sys.stderr)
    return None

  def _restore(self, number: int, like_states) -> Restored | str:
    ocp, spec = self.ocp, self.plan.spec
    try:
      stored = _read_record(ocp, self.manager, number)
    except Exception as e:  # noqa: BLE001 (a cut or corrupt file fails in many ways)
      return f"its record cannot be read ({type(e).__name__})"
    why = mismatch(stored, self.wanted) or content_error(stored, spec)
    if why:
      return why
    shapes = grid_shapes(self.plan, like_states)
    hist_shape = ((stored["history"], self.plan.facts.groups, self.plan.first_slots().size)
                  + _history_tail(spec))
    try:
      tree = self.manager.restore(number, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))["state"]
      leaves = [np.asarray(tree["leaves"][f"{i:04d}"]) for i in range(len(shapes))]
      history = np.asarray(tree["history"])
      extra = len(tree["leaves"]) - len(shapes)
    except Exception as e:  # noqa: BLE001
      return f"it cannot be read back whole ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    got = [(x.shape, str(x.dtype)) for x in leaves]
    if extra or got != shapes:
      return "its arrays do not have this run's shapes"
    if history.shape != hist_shape:
      return f"its history has shape {history.shape}, not {hist_shape}"
    states, history = from_grid(self.plan, like_states, leaves, history)
    return Restored(stored["windows"], stored["finished"], states, history,
                    stored.get("layout") or {}, number)

  def close(self) -> None:
    self.manager.close()


def remove(directory: str) -> None:
  """Removes a run's checkpoint folder (process 0 only on several hosts)."""
  if jax.process_index() == 0:
    shutil.rmtree(directory, ignore_errors=True)
