"""Named points where a test can kill the process, to prove that a run resumes from any
of them (the fault matrix, tests/test_faults.py).

`SUPERPOS_JAX_KILL_AT=name` makes `point(name)` kill this process with SIGKILL (no
cleanup, like a power cut or the out-of-memory killer); `name#k` kills at its k-th pass
(1-based); `SUPERPOS_JAX_KILL_PROCESS=i` limits it to process i of a multi-host run.
Without the variable a point costs one dictionary lookup. The points:

  checkpoint.saving     a checkpoint is about to be written
  checkpoint.saved      a checkpoint was written, training goes on
  training.evaluating   training is done, the final evaluation is about to run
  result.saving         the result is about to be written
  result.saved          the result was written, its checkpoints not yet removed
"""

from __future__ import annotations

import os
import signal

POINTS = ("checkpoint.saving", "checkpoint.saved", "training.evaluating", "result.saving",
          "result.saved")
_passes: dict[str, int] = {}


def point(name: str) -> None:
  """Kills this process here if `SUPERPOS_JAX_KILL_AT` names this point and pass."""
  target = os.environ.get("SUPERPOS_JAX_KILL_AT")
  if not target:
    return
  _passes[name] = _passes.get(name, 0) + 1
  where, _, nth = target.partition("#")
  if where != name or _passes[name] != (int(nth) if nth else 1):
    return
  only = os.environ.get("SUPERPOS_JAX_KILL_PROCESS")
  if only:
    import jax
    if jax.process_index() != int(only):
      return
  os.kill(os.getpid(), signal.SIGKILL)
