"""Commands run one after another, each in its own process group under a time cap inside
one shared deadline, every line of their output teed to a log file.

    outcomes = run_in_turn({"a": argv_a, "b": argv_b}, caps={"a": 60, "b": 30},
                           deadline=time.monotonic() + 450, logs="out/logs",
                           record="out/runs.json")

A command that outlives its cap gets SIGTERM, then SIGKILL `GRACE_S` later, sent to its
whole process group: a child stuck in native code (an XLA compile, a device wait) that
never hands control back to Python is still stopped, and so is anything it started.
Nothing here imports jax: the runner holds no device.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Sequence, TextIO

# Seconds between SIGTERM and SIGKILL of a command cut at its cap.
GRACE_S = 3.0
# A command is not started with less time than this left before the deadline.
MIN_START_S = 15.0
TAIL_LINES = 20
RUNNER_PID = "CAPPED_RUNNER_PID"  # set for every command: the pid of the runner


@dataclasses.dataclass
class Outcome:
  """How one command ended.

  Attributes:
    status: "exited" (it ended by itself: see returncode), "cut" (killed at its cap),
      or "not started" (too little time was left; see note).
    returncode: its exit status (negative: the signal that ended it), None if not started.
    wall_s: seconds from its start to its end.
    cap_s: the cap it ran under (its own, or what was left of the deadline).
    tail: its last lines of output.
    note: why it was not started.
  """

  status: str
  returncode: int | None = None
  wall_s: float | None = None
  cap_s: float | None = None
  tail: list[str] = dataclasses.field(default_factory=list)
  note: str = ""


def _kill_group(proc: subprocess.Popen, grace_s: float) -> None:
  """SIGTERM to `proc`'s process group, SIGKILL after `grace_s` if it is still there."""
  for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      return
    try:
      proc.wait(timeout=wait)
      return
    except subprocess.TimeoutExpired:
      continue


def die_with_parent() -> None:
  """For a command to call first: on Linux, have the kernel SIGKILL it when the runner
  dies, so that a runner killed outright (`timeout -k`, SIGKILL) leaves nothing running.
  (Called by the command itself, not between fork and exec: the runner may hold threads.)"""
  try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
  except Exception:  # noqa: BLE001 (not Linux: the cap still holds while the runner lives)
    return
  runner = os.environ.get(RUNNER_PID)
  if runner and os.getppid() != int(runner):  # the runner died before the call
    os.kill(os.getpid(), signal.SIGKILL)


def _tee(stream, log: TextIO, echo: TextIO | None, tail: collections.deque) -> None:
  for raw in iter(stream.readline, b""):
    line = raw.decode(errors="replace")
    log.write(line)
    log.flush()
    if echo is not None:
      echo.write(line)
      echo.flush()
    tail.append(line.rstrip("\n"))


def run_capped(argv: Sequence[str], *, cap_s: float, log_path: str, env: Mapping | None = None,
               cwd: str | None = None, echo: TextIO | None = None,
               grace_s: float = GRACE_S) -> Outcome:
  """Runs `argv` in a new process group, its stdout and stderr teed to `log_path` (and
  `echo`), killed with its whole group after `cap_s` seconds.

  Returns:
    The `Outcome`: "exited" with its returncode, or "cut".
  """
  os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
  t0 = time.monotonic()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                            env=dict(os.environ if env is None else env, **{RUNNER_PID: str(os.getpid())}),
                            cwd=cwd, start_new_session=True)
    reader = threading.Thread(target=_tee, args=(proc.stdout, log, echo, tail), daemon=True)
    reader.start()
    cut = False
    try:
      proc.wait(timeout=cap_s)
    except subprocess.TimeoutExpired:
      cut = True
      _kill_group(proc, grace_s)
    except BaseException:  # Ctrl-C or SIGTERM of the runner: the child goes with it
      _kill_group(proc, grace_s)
      raise
    finally:
      reader.join(timeout=5.0)
      proc.stdout.close()
    wall = time.monotonic() - t0
    if cut:
      log.write(f"\n[capped] cut: killed (process group) at its {cap_s:.0f} s cap\n")
  return Outcome("cut" if cut else "exited", proc.returncode, round(wall, 2), round(cap_s, 1),
                 list(tail))


def save_outcomes(record: str | None, outcomes: dict[str, Outcome], **tag) -> None:
  """Adds `outcomes` (each with the fields of `tag`) to the JSON at `record`; the entries
  of other names, from earlier runs, are kept."""
  if record is None:
    return
  try:
    with open(record) as f:
      table = json.load(f)
  except (OSError, ValueError):
    table = {}
  table.update({k: dict(dataclasses.asdict(v), **tag) for k, v in outcomes.items()})
  os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
  tmp = f"{record}.{os.getpid()}.tmp"
  with open(tmp, "w") as f:
    json.dump(table, f, indent=1)
  os.replace(tmp, record)


def run_in_turn(commands: Mapping[str, Callable[[float], Sequence[str]]], *,
                caps: Mapping[str, float], deadline: float, logs: str,
                record: str | None = None, tag: Mapping | None = None,
                env: Mapping | None = None, cwd: str | None = None,
                echo: TextIO | None = sys.stdout, min_start_s: float = MIN_START_S,
                grace_s: float = GRACE_S,
                stop_if: Callable[[str, Outcome], str | None] | None = None) -> dict[str, Outcome]:
  """Runs the commands in order, each under min(its cap, time left before `deadline`).

  Args:
    commands: name -> function of the command's cap in seconds returning its argv (so
      that a command can be told how long it has).
    caps: name -> seconds the command may run at most.
    deadline: `time.monotonic()` after which nothing runs; commands that would start
      with less than `min_start_s` left are "not started".
    logs: folder of the logs, `<name>.log` each.
    record: a JSON file that every outcome is added to as soon as it is known, with the
      fields of `tag` (a run id, say).
    stop_if: (name, outcome) -> a reason to start no further command, or None.

  Returns:
    name -> `Outcome`, in the order run.
  """
  outcomes: dict[str, Outcome] = {}
  stopped = None
  for name, command in commands.items():
    left = deadline - time.monotonic()
    if stopped:
      outcomes[name] = Outcome("not started", note=stopped)
    elif left < min_start_s:
      outcomes[name] = Outcome("not started", note=f"{max(left, 0):.0f} s were left before "
                               f"the deadline, under the {min_start_s:.0f} s a section needs "
                               f"to start")
    else:
      cap = min(caps[name], left)
      outcomes[name] = run_capped(command(cap), cap_s=cap, log_path=os.path.join(logs, f"{name}.log"),
                                  env=env, cwd=cwd, echo=echo, grace_s=grace_s)
    save_outcomes(record, {name: outcomes[name]}, **(tag or {}))
    if stop_if and not stopped and outcomes[name].status != "not started":
      stopped = stop_if(name, outcomes[name])
  return outcomes
