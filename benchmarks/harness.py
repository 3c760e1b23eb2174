"""Measurement jobs: one way of training a workload, timed, in a fresh process if asked.

    job = Job(way="looped-jit", spec=spec.to_dict(), points=(0, 5))
    measured = run_job(job, isolate=True)   # compile_s, run_s, models, steps, memory, W

A fresh process per job makes its peak memory its own (read from /proc, see
`peak_rss_mb`). The PyTorch ways (`TORCH_WAYS`, benchmarks/torch_way.py) need the
`bench` extra; without torch, or where `torch.compile` fails, their job reports
`{"way": ..., "skipped": reason}` instead of measurements. The worker is this file run
as a script, the job as JSON on stdin:

    python benchmarks/harness.py < job.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

import looped
from superpos_jax import cli, sweep
from superpos_jax.spec import SweepSpec

WAYS = ("vmapped", "looped-jit", "looped-step", "looped-switch")
# The notebook's PyTorch loop, eager and compiled: optional (pip install -e '.[bench]').
TORCH_WAYS = ("torch-eager", "torch-compile")
ALL_WAYS = WAYS + TORCH_WAYS
# occhio's ModelGrid (benchmarks/occhio_way.py): one activation per grid, so only on
# the ReLU workloads; optional like torch.
OCCHIO_WAYS = ("occhio",)
KNOWN_WAYS = ALL_WAYS + OCCHIO_WAYS

RNG_NOTES = {
    "vmapped": "one [n, B] uniform draw per step per seed, read by every chunk of that "
               "seed, or by each model of a chunk spanning seeds (common random numbers)",
    "looped-jit": "one [n, B] uniform draw per step per model (in blocks of steps, as "
                  "train.py draws)",
    "looped-step": "one [n, B] uniform draw per step per model",
    "looped-switch": "one [n, B] uniform draw per step per chunk of same-seed models "
                     "(the engine's chunks, each drawing for itself)",
    "torch-eager": "one [B, n] torch.rand draw per step per model (torch's generator, "
                   "so no dW check against vmapped)",
    "torch-compile": "one [B, n] torch.rand draw per step per model (torch's generator, "
                     "so no dW check against vmapped)",
    "occhio": "one [B, n] mask and one [B, n] value draw per step per distinct (density, "
              "seed), shared by its models (occhio's generator, so no dW check)",
}
TORCH_MISSING = "torch is not installed (pip install -e '.[bench]')"
OCCHIO_MISSING = "occhio is not installed (pip install -e '.[bench]')"


class WaySkipped(Exception):
  """A way cannot run here (torch missing, torch.compile failing); the message says why."""


@dataclasses.dataclass(frozen=True)
class Job:
  """One measurement: one way of training (a subset of) one spec's grid.

  Attributes:
    way: one of `ALL_WAYS`.
    spec: `SweepSpec.to_dict()` of the whole workload.
    points: flat point indices to train (looped-jit, looped-step); None = all.
    steps: train this many steps instead of `spec.steps` (any way but vmapped);
      None = all. `summarize` scales the subset's run time to the whole job.
    report_points: points whose final W the report includes (for the cross-check).
    backend: JAX backend.
    all_W: report every model's final W as "W_all" `[P, m, n]` (a way that trains the
      whole grid for all steps), for a check of where the models land.
  """

  way: str
  spec: dict
  points: tuple[int, ...] | None = None
  steps: int | None = None
  report_points: tuple[int, ...] = ()
  backend: str = "cpu"
  all_W: bool = False


class JobError(RuntimeError):
  """A measurement job failed (its message is the job's last line of stderr)."""


def peak_rss_mb() -> float:
  """Peak resident memory of this process, in MB.

  On Linux, VmHWM of /proc/self/status: ru_maxrss survives fork and exec, so a fresh
  worker spawned by a 1.7 GB parent reported 1.7 GB for one n=2 model.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 2**10  # kB
  except OSError:
    pass
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
  return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _peak_device_mb(device: jax.Device) -> float | None:
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / 2**20


def _train(way: str, spec: SweepSpec, points: list[int], devices) -> tuple:
  """(compile_s, run_s, {point: W}, points trained, extra report fields) of one way."""
  if way == "vmapped":
    res = sweep.run(spec, progress=False, devices=devices)
    W = dict(enumerate(res["W"].reshape(-1, spec.m, spec.n)))
    return (res.meta["timings"]["compile_s"], res.meta["timings"]["run_s"], W,
            range(spec.num_models), {"chunk_size": res.meta["engine"]["chunk_size"]})
  if way == "looped-switch":
    return (*looped.looped_switch(spec, devices), range(spec.num_models), {})
  if way in TORCH_WAYS:
    return _train_torch(way, spec)
  if way in OCCHIO_WAYS:
    return _train_occhio(spec)
  with jax.default_device(devices[0]):  # a plain loop runs on one device
    ways = {"looped-jit": looped.looped_jit, "looped-step": looped.looped_step}
    return (*ways[way](spec, points), points, {})


def _train_torch(way: str, spec: SweepSpec) -> tuple:
  """`_train` of a PyTorch way: imported only here, so that the benchmark runs without it.

  Raises:
    WaySkipped: torch is missing, or `torch.compile` failed.
  """
  try:
    import torch_way
  except ImportError as e:
    raise WaySkipped(f"{TORCH_MISSING}: {e}") from None
  threads, probe = torch_way.choose_threads(spec)
  try:
    run = torch_way.train_grid(spec, compile=way == "torch-compile", threads=threads)
  except torch_way.CompileFailed as e:
    raise WaySkipped(f"torch.compile failed here: {e}") from None
  # No W: torch draws other random numbers, so a dW against vmapped would measure noise.
  torch = torch_way.torch
  return (run.compile_s, run.run_s, {}, range(spec.num_models),
          {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "thread_probe_s": probe})


def _train_occhio(spec: SweepSpec) -> tuple:
  """`_train` of occhio's ModelGrid, imported only here (see `_train_torch`).

  Raises:
    WaySkipped: torch or occhio is missing.
  """
  try:
    import occhio  # noqa: F401
    import torch
  except ImportError as e:
    raise WaySkipped(f"{OCCHIO_MISSING}: {e}") from None
  import occhio_way
  run = occhio_way.train_grid(spec)
  return (run.setup_s, run.run_s, {}, range(spec.num_models),
          {"occhio": occhio_way.version(), "torch": torch.__version__,
           "torch_threads": run.threads, "thread_probe_s": run.probe,
           "W_all": run.W.tolist()})


def measure(job: Job) -> dict[str, Any]:
  """Runs one job in this process and returns what it measured.

  Args:
    job: the measurement.

  Returns:
    A JSON-ready dict: way, models and steps actually trained, compile_s, run_s,
    peak_rss_mb (the process's peak resident memory), rss_baseline_mb (the peak before
    the job, after importing jax), peak_device_mb (accelerators that report it, else
    None), chunk_size (vmapped), torch and torch_threads (PyTorch ways), and W:
    `{str(point): [m, n] list}` for the requested `report_points` that were trained
    (none for the PyTorch ways). A way that cannot run here gives only way and skipped
    (the reason).
  """
  if job.way not in KNOWN_WAYS:
    raise ValueError(f"unknown way {job.way!r}; valid: {', '.join(KNOWN_WAYS)}")
  spec = SweepSpec.from_dict(job.spec)
  devices = jax.devices(job.backend)
  rss_baseline = peak_rss_mb()
  points = list(range(spec.num_models) if job.points is None else job.points)
  if job.steps is not None and job.steps != spec.steps:
    spec = dataclasses.replace(spec, steps=job.steps, log_every=min(spec.log_every, job.steps))
  try:
    compile_s, run_s, W, points, extra = _train(job.way, spec, points, devices)
  except WaySkipped as e:
    return {"way": job.way, "skipped": str(e)}
  if job.all_W and "W_all" not in extra and len(W) == spec.num_models:
    extra["W_all"] = np.stack([W[p] for p in range(spec.num_models)]).tolist()
  elif not job.all_W:
    extra.pop("W_all", None)
  return {"way": job.way, "models": len(points), "steps": spec.steps,
          "compile_s": compile_s, "run_s": run_s,
          "peak_rss_mb": peak_rss_mb(), "rss_baseline_mb": rss_baseline,
          "peak_device_mb": _peak_device_mb(devices[0]), **extra,
          "W": {str(p): np.asarray(W[p]).tolist() for p in job.report_points if p in W}}


def run_job(job: Job, *, isolate: bool) -> dict[str, Any]:
  """`measure(job)`, in a fresh process when `isolate` (so peak memory is the job's own).

  Args:
    job: the measurement.
    isolate: run it in a fresh interpreter (this file as a script).

  Returns:
    `measure`'s dict.

  Raises:
    JobError: the isolated process failed (out of memory, for instance).
  """
  if not isolate:
    return measure(job)
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)],
                        input=json.dumps(dataclasses.asdict(job)), capture_output=True,
                        text=True)
  if proc.returncode != 0:
    lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
    raise JobError(f"{job.way} job failed (exit {proc.returncode}): {lines[-1]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _scaled_row(spec: SweepSpec, way: str, m: dict[str, Any], isolated: bool) -> dict:
  """One way's report row, its run time scaled linearly to the whole grid and steps."""
  total, done = spec.num_models * spec.steps, m["models"] * m["steps"]
  memory = ("peak_rss_mb", "rss_baseline_mb", "peak_device_mb")
  torch = {k: m[k] for k in ("torch", "torch_threads", "occhio", "thread_probe_s", "run_s_runs")
           if k in m}
  return {"models": spec.num_models, "steps": spec.steps,
          "compile_s": m["compile_s"], "run_s": m["run_s"] * total / done,
          "model_steps_per_s": done / m["run_s"],
          **{k: m[k] if isolated else None for k in memory},
          "scaled_from": ({"models": m["models"], "steps": m["steps"], "run_s": m["run_s"]}
                          if done != total else None),
          "rng": RNG_NOTES[way], **torch}


def _max_abs_diff_W(W: dict[str, list], ref_W: dict[str, list]) -> tuple[float | None, int]:
  """Largest |W - ref_W| over the points both hold, and how many they are."""
  shared = [p for p in W if p in ref_W]
  diffs = [float(np.max(np.abs(np.asarray(W[p]) - np.asarray(ref_W[p])))) for p in shared]
  return (max(diffs) if diffs else None), len(shared)


def summarize(spec: SweepSpec, measured: dict[str, dict[str, Any]],
              isolated: bool) -> dict[str, dict[str, Any]]:
  """Per-way report of one workload, run times scaled to the whole grid and all steps.

  Args:
    spec: the workload.
    measured: way -> `measure` output; must hold "vmapped". Skipped ways get no row.
    isolated: each job ran in a fresh process (otherwise peak memory is a running
      maximum over the jobs before it and is reported as None).

  Returns:
    way -> models, steps (the workload's), compile_s, run_s (scaled linearly from the
    measured subset where `scaled_from` is set), model_steps_per_s (measured),
    peak_rss_mb, rss_baseline_mb, peak_device_mb, scaled_from ({models, steps, run_s}
    actually measured, or None), speedup_vs_vmapped (run time), speedup_total_vs_vmapped
    (compile + run), max_abs_diff_W (final W against vmapped on the shared report
    points, or None where no point was trained for all steps), diff_W_points, rng,
    and torch, torch_threads for the PyTorch ways.
  """
  rows = {way: _scaled_row(spec, way, m, isolated) for way, m in measured.items()
          if "skipped" not in m}
  ref = rows["vmapped"]
  for way, row in rows.items():
    row["speedup_vs_vmapped"] = row["run_s"] / ref["run_s"]
    row["speedup_total_vs_vmapped"] = ((row["compile_s"] + row["run_s"]) /
                                       (ref["compile_s"] + ref["run_s"]))
    diff, shared = _max_abs_diff_W(measured[way]["W"], measured["vmapped"]["W"])
    if way == "vmapped" or measured[way]["steps"] != spec.steps:
      diff = None
    row["max_abs_diff_W"] = diff
    row["diff_W_points"] = shared if diff is not None else 0
  return rows


def _plan_jobs(spec: SweepSpec, subsets: dict[str, dict[str, Any]],
               ways: Sequence[str]) -> dict[str, tuple]:
  """way -> (points, steps) of its job: the subset of `subsets[way]`, None = all."""
  jobs = {}
  for way in ways:
    sub = subsets.get(way, {})
    points = None
    if way in ("looped-jit", "looped-step"):
      points = tuple(int(p) for p in looped.subset_points(spec, sub.get("per_activation")))
    steps = max(1, round(spec.steps * sub.get("steps_fraction", 1.0)))
    jobs[way] = (points, None if steps == spec.steps else steps)
  return jobs


def _bracketed(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
  """The reference way measured before and after the others: its mean run time (both
  kept in "run_s_runs"), so that a change of the machine's load shows and is shared."""
  out = dict(first, run_s=(first["run_s"] + last["run_s"]) / 2,
             run_s_runs=[first["run_s"], last["run_s"]])
  out["peak_rss_mb"] = max(first["peak_rss_mb"], last["peak_rss_mb"])
  return out


def benchmark_workload(spec: SweepSpec, subsets: dict[str, dict[str, Any]], *,
                       backend: str, isolate: bool, ways: Sequence[str] = ALL_WAYS,
                       bracket: bool = False,
                       check: Callable[[SweepSpec, dict], dict] | None = None,
                       log: Callable[[str], None] = lambda s: None) -> dict[str, dict]:
  """Measures `ways` on `spec` and summarises them (see `summarize`).

  Args:
    spec: the workload.
    subsets: way -> {"per_activation": points of each activation to train (None = all),
      "steps_fraction": share of the steps to train (default 1)}; slow ways are measured
      on the subset and scaled linearly.
    backend: JAX backend.
    isolate: one fresh process per way.
    ways: the ways to measure, of `KNOWN_WAYS`; "vmapped", the reference, is always
      measured.
    bracket: measure "vmapped" again after the other ways; its row keeps the mean.
    check: `check(spec, {way: W_all [P, m, n]})` of the ways that trained every model
      for all steps (vmapped first), a JSON-ready dict; None = no check.
    log: progress lines.

  Returns:
    {"ways": way -> `summarize`'s row, "skipped": way -> why it could not run here,
    and "check": `check`'s dict when given and some other way trained the whole grid}.
  """
  ways = ("vmapped",) + tuple(w for w in ways if w != "vmapped")
  jobs = _plan_jobs(spec, subsets, ways)
  report = tuple(sorted({p for points, _ in jobs.values() if points for p in points}))
  order = list(jobs) + (["vmapped"] if bracket else [])
  measured, skipped = {}, {}
  for i, way in enumerate(order):
    points, steps = jobs[way]
    job = Job(way=way, spec=spec.to_dict(), points=points, steps=steps, report_points=report,
              backend=backend, all_W=check is not None and i < len(jobs))
    m = run_job(job, isolate=isolate)
    if "skipped" in m:
      measured[way] = m
      skipped[way] = m["skipped"]
      log(f"  {way:14s} skipped: {m['skipped']}")
      continue
    log(f"  {way:14s} {m['models']:>7,} models x {m['steps']:>6,} steps: compile "
        f"{m['compile_s']:7.2f} s, run {m['run_s']:8.3f} s "
        f"({m['models'] * m['steps'] / m['run_s']:,.0f} model-steps/s)")
    measured[way] = _bracketed(measured[way], m) if way in measured else m
  out = {"ways": None, "skipped": skipped}
  landed = {way: np.asarray(m.pop("W_all")) for way, m in measured.items() if "W_all" in m}
  if check is not None and len(landed) > 1:
    out["check"] = check(spec, landed)
  out["ways"] = summarize(spec, measured, isolate)
  return out


def scaling_series(specs: Sequence[SweepSpec], *, backend: str, isolate: bool,
                   log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
  """The engine's time and memory for each spec (growing grids); stops at the first failure.

  Returns:
    One dict per spec: models, steps, chunk_size, compile_s, run_s, model_steps_per_s,
    peak_rss_mb, rss_baseline_mb, peak_device_mb (memory None unless `isolate`), or
    models, steps and error for a grid that failed (the series ends there).
  """
  rows = []
  for spec in specs:
    try:
      m = run_job(Job(way="vmapped", spec=spec.to_dict(), backend=backend), isolate=isolate)
    except JobError as e:
      rows.append({"models": spec.num_models, "steps": spec.steps, "error": str(e)})
      log(f"  {spec.num_models:>9,} models: {e}")
      break
    row = {"models": spec.num_models, "steps": spec.steps, "chunk_size": m["chunk_size"],
           "compile_s": m["compile_s"], "run_s": m["run_s"],
           "model_steps_per_s": spec.num_models * spec.steps / m["run_s"]}
    for k in ("peak_rss_mb", "rss_baseline_mb", "peak_device_mb"):
      row[k] = m[k] if isolate else None
    rows.append(row)
    log(f"  {spec.num_models:>9,} models x {spec.steps} steps: compile {m['compile_s']:6.2f} s, "
        f"run {m['run_s']:8.3f} s ({row['model_steps_per_s']:,.0f} model-steps/s)")
  return rows


def progress_overhead(spec: SweepSpec, devices: Sequence[jax.Device],
                      repeats: int = 2) -> dict[str, Any]:
  """Run time of the engine with the progress callback on vs off (best of `repeats`).

  The display itself goes to /dev/null; what is measured is the host callback the
  program makes once per log window and chunk.
  """
  times: dict[bool, list[float]] = {False: [], True: []}
  for _ in range(repeats):
    for progress in (False, True):
      with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        res = sweep.run(spec, progress=progress, devices=devices)
      times[progress].append(res.meta["timings"]["run_s"])
  off, on = min(times[False]), min(times[True])
  return {"models": spec.num_models, "steps": spec.steps, "log_every": spec.log_every,
          "run_s_off": off, "run_s_on": on, "overhead_pct": 100.0 * (on / off - 1.0)}


def machine_info(backend: str) -> dict[str, Any]:
  """CPU model, core count, load, JAX version, backend, devices and date."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = models[0] if models else cpu
  except OSError:
    pass
  devices = jax.devices(backend)
  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    load = None
  return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1_5_15min": load,
          "jax": jax.__version__, "backend": backend, "device_count": len(devices),
          "device_kind": devices[0].device_kind, "platform": platform.platform(),
          "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _worker() -> int:
  """Measures the job read from stdin and prints its report as one JSON line."""
  job = json.load(sys.stdin)
  cli.configure_host(job.get("backend", "cpu"), compile_cache=False)  # compile times measured
  job["points"] = None if job.get("points") is None else tuple(job["points"])
  job["report_points"] = tuple(job.get("report_points", ()))
  print(json.dumps(measure(Job(**job))))
  return 0


if __name__ == "__main__":
  sys.exit(_worker())
