"""The engine's training work done the slow ways, for `experiments/benchmark.py`.

Each baseline trains exactly the models of a `sweep.SweepSpec` (rng="shared"): the same
init key `fold_in(key(seed), 0)`, the same data `thin(uniform(fold_in(fold_in(key(seed), 1),
t), (n, B)), density)` at step t, the same AdamW step (`sweep._make_point_step`), the
same loss windows and evaluation. Their final weights therefore equal the engine's to
float tolerance, and a benchmark of them compares equal work:

  looped-jit     one compiled `lax.scan` training run per grid point, called from Python
                 point by point: the best a careful user of plain JAX would write;
  looped-step    one compiled `train_step` per step, a Python loop over steps and points:
                 what most public ports do;
  looped-switch  every point vmapped in one program with the engine's chunking, but the
                 activation picked per point by `lax.switch`; under `vmap` a switch with a
                 batched index runs every branch at every point, which is why the engine
                 groups points by activation instead.

Random numbers: the engine and looped-switch draw a step's `[n, B]` uniforms once per
chunk of models that share a seed (common random numbers); looped-jit and looped-step
draw them once per model, as a user's loop would. Every model sees the same numbers either
way; only the cost of drawing them differs.

    job = Job(way="looped-jit", spec=spec.to_dict(), points=(0, 5))
    report = measure(job)   # compile_s, run_s, models, steps, peak memory, final W
"""

from __future__ import annotations

import dataclasses
import functools
import os
import resource
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import activations, data, profiling, sweep
from superpos_jax.loss import batch_loss
from superpos_jax.model import Params, init_params

WAYS = ("vmapped", "looped-jit", "looped-step", "looped-switch")

RNG_NOTES = {
    "vmapped": "one [n, B] uniform draw per step per chunk of same-seed models (common "
               "random numbers)",
    "looped-jit": "one [n, B] uniform draw per step per model",
    "looped-step": "one [n, B] uniform draw per step per model",
    "looped-switch": "one [n, B] uniform draw per step per chunk of same-seed models "
                     "(as the engine)",
}


class GridPoints(NamedTuple):
  """The swept values of every grid point, flat in the engine's result order.

  Point p is `np.unravel_index(p, spec.grid_shape)`: activation, density, importance,
  lr, seed, the leading axes of every `SweepResult` array.
  """

  activation: np.ndarray  # [P] int32, index into spec.activations
  density: np.ndarray  # [P] float32
  importance: np.ndarray  # [P, n] float32
  lr: np.ndarray  # [P] float32
  seed: np.ndarray  # [P] uint32


def grid_points(spec: sweep.SweepSpec) -> GridPoints:
  """Every grid point of `spec`, in the engine's flat (activation, ..., seed) order."""
  a, d, i, l, s = (x.ravel() for x in np.indices(spec.grid_shape))
  return GridPoints(activation=a.astype(np.int32),
                    density=np.asarray(spec.densities, np.float32)[d],
                    importance=spec.importance_matrix().astype(np.float32)[i],
                    lr=np.asarray(spec.lrs, np.float32)[l],
                    seed=np.asarray(spec.seeds, np.uint32)[s])


def subset_points(spec: sweep.SweepSpec, per_activation: int | None) -> np.ndarray:
  """Flat indices of `per_activation` points of each activation, evenly spread.

  None (or at least the points per activation) selects every point.
  """
  per_act = spec.num_models // len(spec.activations)
  k = per_act if per_activation is None else min(per_activation, per_act)
  within = np.unique(np.linspace(0, per_act - 1, k).round().astype(np.int64))
  return np.concatenate([a * per_act + within for a in range(len(spec.activations))])


def _train_scan(one_step: Callable, state: Any, steps: int, log_every: int):
  """Runs `one_step(state, t) -> (state, loss)` for t < steps, as the engine does.

  Returns:
    (final state, mean loss of each log window `[W, ...]`, a last short window included).
  """
  n_windows, remainder = divmod(steps, log_every)

  def window(state, start, length):
    state, losses = jax.lax.scan(one_step, state, start + jnp.arange(length))
    return state, jnp.mean(losses, axis=0)

  state, history = jax.lax.scan(lambda s, w: window(s, w * log_every, log_every), state,
                                jnp.arange(n_windows))
  if remainder:
    state, last = window(state, n_windows * log_every, remainder)
    history = jnp.concatenate([history, last[None]], axis=0)
  return state, history


def _init(spec: sweep.SweepSpec, seed: jax.Array):
  """A model's params, AdamW state and data key, derived from its seed as the engine does."""
  key = jax.random.key(seed)
  params = init_params(jax.random.fold_in(key, 0), spec.n, spec.m, init=spec.init,
                       instances=spec.init_instances)
  return params, sweep._optimizer(1.0, 0.0).init(params), jax.random.fold_in(key, 1)


def _draw(spec: sweep.SweepSpec, data_key: jax.Array, t: jax.Array) -> jax.Array:
  """The `[n, B]` uniforms of step `t`."""
  return jax.random.uniform(jax.random.fold_in(data_key, t), (spec.n, spec.batch_size))


def _evaluate(spec: sweep.SweepSpec, act: activations.Activation, params: Params,
              density: jax.Array, importance: jax.Array) -> jax.Array:
  """Loss on the engine's fixed evaluation set."""
  u_eval = jax.random.uniform(jax.random.key(sweep.EVAL_SEED), (spec.n, spec.eval_size))
  return batch_loss(params, data.thin(u_eval, density), importance, act.fn,
                    per_example=act.per_example)


def make_train_point(spec: sweep.SweepSpec, act: activations.Activation) -> Callable:
  """looped-jit: a pure training run of ONE model, `lax.scan` over all steps inside.

  Args:
    spec: static settings (n, m, steps, batch size, init, log window, eval size).
    act: the model's activation.

  Returns:
    `train(seed, density, importance, lr, weight_decay) -> (Params, history [W], eval_loss)`
    with `seed` a uint32 scalar and `importance: [n]`; jit it.
  """
  point_step = sweep._make_point_step(act)

  def train(seed, density, importance, lr, weight_decay):
    params, opt_state, data_key = _init(spec, seed)

    def one_step(state, t):
      params, opt_state, loss = point_step(*state, _draw(spec, data_key, t), density,
                                           importance, lr, weight_decay)
      return (params, opt_state), loss

    (params, _), history = _train_scan(one_step, (params, opt_state), spec.steps,
                                       spec.log_every)
    return params, history, _evaluate(spec, act, params, density, importance)

  return train


class StepFns(NamedTuple):
  """looped-step's three functions of one model (jit each)."""

  init: Callable  # seed -> (params, opt_state, data_key)
  # (params, opt_state, data_key, t, density, importance, lr, wd) -> (params, opt_state, loss)
  train_step: Callable
  evaluate: Callable  # (params, density, importance) -> eval loss


def make_step_fns(spec: sweep.SweepSpec, act: activations.Activation) -> StepFns:
  """looped-step: one AdamW step of one model per call, drawing its own batch."""
  point_step = sweep._make_point_step(act)

  def train_step(params, opt_state, data_key, t, density, importance, lr, weight_decay):
    return point_step(params, opt_state, _draw(spec, data_key, t), density, importance, lr,
                      weight_decay)

  return StepFns(init=functools.partial(_init, spec), train_step=train_step,
                 evaluate=functools.partial(_evaluate, spec, act))


def _switch_activation(acts: Sequence[activations.Activation], index: jax.Array):
  """One activation of `[n, B]` that runs `acts[index]` through `lax.switch`."""
  branches = [jax.vmap(a.fn, in_axes=1, out_axes=1) if a.per_example else a.fn for a in acts]
  return activations.Activation(name="switch", description="lax.switch over activations",
                                fn=lambda z: jax.lax.switch(index, branches, z))


class SwitchProgram(NamedTuple):
  """looped-switch's jitted program, its inputs and where each point's outputs land."""

  fn: Callable  # (*inputs) -> (W [chunks, C, m, n], b [chunks, C, n], history, eval_loss)
  inputs: tuple  # seed, activation, density, importance, lr: [chunks, C, ...]; weight decay
  slot: np.ndarray  # [P] flat chunk slot holding point p


def make_switch_program(spec: sweep.SweepSpec, *, chunk_size: int,
                        devices: Sequence[jax.Device]) -> SwitchProgram:
  """looped-switch: the engine's layout without grouping by activation.

  Points are ordered (seed, activation, density, importance, lr) and cut into chunks of
  `chunk_size` models that never span two seeds (one `[n, B]` draw per chunk and step, as
  the engine); chunks are `lax.map`ped and sharded over `devices` with `shard_map`. Each
  model's activation is `lax.switch(index, ...)` with a per-point index.
  """
  acts = [activations.get(a) for a in spec.activations]
  S, C, n_dev = len(spec.seeds), chunk_size, len(devices)
  per_seed = np.arange(spec.num_models).reshape(-1, S).T  # [S, Q]: a seed's points, in order
  Q = per_seed.shape[1]
  q = np.minimum(np.arange(-(-Q // C) * C), Q - 1).reshape(-1, C)
  index = per_seed[:, q].reshape(-1, C)  # [chunks, C]; pads repeat a seed's last point
  pad = -index.shape[0] % n_dev
  index = np.concatenate([index, np.repeat(index[-1:], pad, axis=0)])
  slot = np.zeros(spec.num_models, np.int64)
  slot[index.ravel()[::-1]] = np.arange(index.size)[::-1]  # first slot of each point

  def point_step(params, opt_state, u, act_index, density, importance, lr, weight_decay):
    act = _switch_activation(acts, act_index)
    return sweep._make_point_step(act)(params, opt_state, u, density, importance, lr,
                                       weight_decay)

  def evaluate(params, act_index, density, importance):
    return _evaluate(spec, _switch_activation(acts, act_index), params, density, importance)

  def train_chunk(seed, act_index, density, importance, lr, weight_decay):
    params, opt_state, data_keys = jax.vmap(functools.partial(_init, spec))(seed)
    step = jax.vmap(point_step, in_axes=(0, 0, None, 0, 0, 0, 0, None))

    def one_step(state, t):
      params, opt_state, loss = step(*state, _draw(spec, data_keys[0], t), act_index,
                                     density, importance, lr, weight_decay)
      return (params, opt_state), loss

    (params, _), history = _train_scan(one_step, (params, opt_state), spec.steps,
                                       spec.log_every)
    eval_loss = jax.vmap(evaluate)(params, act_index, density, importance)
    return params.W, params.b, history.T, eval_loss

  def per_device(seed, act_index, density, importance, lr, weight_decay):
    run = functools.partial(train_chunk, weight_decay=weight_decay)
    return jax.lax.map(lambda a: run(*a), (seed, act_index, density, importance, lr))

  grid = jax.sharding.PartitionSpec("grid")
  mesh = jax.sharding.Mesh(np.asarray(devices), ("grid",))
  fn = jax.jit(jax.shard_map(per_device, mesh=mesh,
                             in_specs=(grid,) * 5 + (jax.sharding.PartitionSpec(),),
                             out_specs=(grid,) * 4, check_vma=False))
  gp = grid_points(spec)
  inputs = (gp.seed[index], gp.activation[index], gp.density[index], gp.importance[index],
            gp.lr[index], np.float32(spec.weight_decay))
  return SwitchProgram(fn=fn, inputs=inputs, slot=slot)


@dataclasses.dataclass(frozen=True)
class Job:
  """One measurement: one way of training (a subset of) one spec's grid.

  Attributes:
    way: one of `WAYS`.
    spec: `SweepSpec.to_dict()` of the whole workload.
    points: flat point indices to train (looped-jit, looped-step); None = all.
    steps: train this many steps instead of `spec.steps` (looped-step, looped-switch);
      None = all. `summarize` scales the subset's run time to the whole job.
    report_points: points whose final W the report includes (for the cross-check).
    backend: JAX backend.
  """

  way: str
  spec: dict
  points: tuple[int, ...] | None = None
  steps: int | None = None
  report_points: tuple[int, ...] = ()
  backend: str = "cpu"


def peak_rss_mb() -> float:
  """Peak resident memory of this process, in MB.

  On Linux, VmHWM of /proc/self/status: ru_maxrss survives fork and exec, so a fresh
  worker spawned by a 1.7 GB parent reported 1.7 GB for one n=2 model.
  """
  import sys
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


def _looped_jit(spec, points):
  gp = grid_points(spec)
  wd = np.float32(spec.weight_decay)
  args = lambda p: (gp.seed[p], gp.density[p], gp.importance[p], gp.lr[p], wd)
  compiled, compile_s = {}, 0.0
  for p in points:  # compile once per activation (what jit's cache does)
    a = int(gp.activation[p])
    if a not in compiled:
      t0 = time.perf_counter()
      train = make_train_point(spec, activations.get(spec.activations[a]))
      compiled[a] = jax.jit(train).lower(*args(p)).compile()
      compile_s += time.perf_counter() - t0
  results = {}
  t0 = time.perf_counter()
  for p in points:
    params, history, eval_loss = compiled[int(gp.activation[p])](*args(p))
    results[p] = (np.asarray(params.W), history, eval_loss)  # waits for the point
  return compile_s, time.perf_counter() - t0, {p: r[0] for p, r in results.items()}


def _looped_step(spec, points, steps):
  gp = grid_points(spec)
  wd = np.float32(spec.weight_decay)
  compiled, compile_s = {}, 0.0
  t0 = time.perf_counter()
  init = jax.jit(functools.partial(_init, spec)).lower(gp.seed[0]).compile()
  compile_s += time.perf_counter() - t0
  for p in points:
    a = int(gp.activation[p])
    if a not in compiled:
      t0 = time.perf_counter()
      fns = make_step_fns(spec, activations.get(spec.activations[a]))
      params, opt_state, data_key = init(gp.seed[p])
      step = jax.jit(fns.train_step).lower(
          params, opt_state, data_key, 0, gp.density[p], gp.importance[p], gp.lr[p], wd)
      evaluate = jax.jit(fns.evaluate).lower(params, gp.density[p], gp.importance[p])
      compiled[a] = (step.compile(), evaluate.compile())
      compile_s += time.perf_counter() - t0
  results = {}
  t0 = time.perf_counter()
  for p in points:
    train_step, evaluate = compiled[int(gp.activation[p])]
    density, importance, lr = gp.density[p], gp.importance[p], gp.lr[p]
    params, opt_state, data_key = init(gp.seed[p])
    history = []
    for t in range(steps):
      params, opt_state, loss = train_step(params, opt_state, data_key, t, density,
                                           importance, lr, wd)
      if (t + 1) % spec.log_every == 0:
        history.append(float(loss))  # a port logs the loss once per window
    results[p] = (np.asarray(params.W), history, float(evaluate(params, density, importance)))
  return compile_s, time.perf_counter() - t0, {p: r[0] for p, r in results.items()}


def _looped_switch(spec, devices):
  chunk = sweep.choose_chunk_size(spec, devices=len(devices))  # the engine's chunking
  program = make_switch_program(spec, chunk_size=chunk, devices=devices)
  t0 = time.perf_counter()
  compiled = program.fn.lower(*program.inputs).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*program.inputs)))
  run_s = time.perf_counter() - t0
  W = out[0].reshape((-1,) + out[0].shape[2:])[program.slot]
  return compile_s, run_s, dict(enumerate(W))


def measure(job: Job) -> dict[str, Any]:
  """Runs one job and returns what it measured.

  Returns:
    A JSON-ready dict: way, models and steps actually trained, compile_s, run_s,
    peak_rss_mb (the process's peak resident memory), rss_baseline_mb (the peak before
    the job, after importing jax), peak_device_mb (accelerators that report it, else
    None), chunk_size (vmapped), and W: `{str(point): [m, n] list}` for the requested
    `report_points` that were trained.
  """
  if job.way not in WAYS:
    raise ValueError(f"unknown way {job.way!r}; valid: {', '.join(WAYS)}")
  spec = sweep.SweepSpec.from_dict(job.spec)
  if spec.rng != "shared":
    raise ValueError(f"the baselines reproduce rng='shared' only, got rng={spec.rng!r}")
  devices = jax.devices(job.backend)
  rss_baseline = peak_rss_mb()
  points = list(range(spec.num_models) if job.points is None else job.points)
  steps = spec.steps if job.steps is None else job.steps
  if steps != spec.steps:
    spec = dataclasses.replace(spec, steps=steps, log_every=min(spec.log_every, steps))
  extra = {}
  if job.way == "vmapped":
    res = sweep.run(spec, progress=False, devices=devices)
    compile_s, run_s = res.meta["timings"]["compile_s"], res.meta["timings"]["run_s"]
    W = dict(enumerate(res["W"].reshape(-1, spec.m, spec.n)))
    points, extra = range(spec.num_models), {"chunk_size": res.meta["engine"]["chunk_size"]}
  elif job.way == "looped-switch":
    compile_s, run_s, W = _looped_switch(spec, devices)
    points = range(spec.num_models)
  else:  # a plain loop runs on one device
    with jax.default_device(devices[0]):
      if job.way == "looped-jit":
        compile_s, run_s, W = _looped_jit(spec, points)
      else:
        compile_s, run_s, W = _looped_step(spec, points, steps)
  return {"way": job.way, "models": len(points), "steps": steps,
          "compile_s": compile_s, "run_s": run_s,
          "peak_rss_mb": peak_rss_mb(), "rss_baseline_mb": rss_baseline,
          "peak_device_mb": _peak_device_mb(devices[0]), **extra,
          "W": {str(p): np.asarray(W[p]).tolist() for p in job.report_points if p in W}}


def summarize(spec: sweep.SweepSpec, measured: dict[str, dict[str, Any]],
              isolated: bool) -> dict[str, dict[str, Any]]:
  """Per-way report of one workload, run times scaled to the whole grid and all steps.

  Args:
    spec: the workload.
    measured: way -> `measure` output; must hold "vmapped".
    isolated: each job ran in a fresh process (otherwise peak memory is a running
      maximum over the jobs before it and is reported as None).

  Returns:
    way -> models, steps (the workload's), compile_s, run_s (scaled linearly from the
    measured subset where `scaled_from` is set), model_steps_per_s (measured),
    peak_rss_mb, rss_baseline_mb, peak_device_mb, scaled_from ({models, steps, run_s}
    actually measured, or None), speedup_vs_vmapped (run time), speedup_total_vs_vmapped
    (compile + run), max_abs_diff_W (final W against vmapped on the shared report
    points, or None where no point was trained for all steps), rng.
  """
  total = spec.num_models * spec.steps
  rows = {}
  for way, m in measured.items():
    done = m["models"] * m["steps"]
    scaled = done != total
    rows[way] = {
        "models": spec.num_models, "steps": spec.steps,
        "compile_s": m["compile_s"], "run_s": m["run_s"] * total / done,
        "model_steps_per_s": done / m["run_s"],
        "peak_rss_mb": m["peak_rss_mb"] if isolated else None,
        "rss_baseline_mb": m["rss_baseline_mb"] if isolated else None,
        "peak_device_mb": m["peak_device_mb"] if isolated else None,
        "scaled_from": ({"models": m["models"], "steps": m["steps"], "run_s": m["run_s"]}
                        if scaled else None),
        "rng": RNG_NOTES[way],
    }
  ref = rows["vmapped"]
  ref_W = measured["vmapped"]["W"]
  for way, row in rows.items():
    row["speedup_vs_vmapped"] = row["run_s"] / ref["run_s"]
    row["speedup_total_vs_vmapped"] = ((row["compile_s"] + row["run_s"]) /
                                       (ref["compile_s"] + ref["run_s"]))
    shared = [p for p in measured[way]["W"] if p in ref_W]
    full_steps = measured[way]["steps"] == spec.steps
    row["max_abs_diff_W"] = (None if way == "vmapped" or not shared or not full_steps else
                             max(float(np.max(np.abs(np.asarray(measured[way]["W"][p]) -
                                                     np.asarray(ref_W[p]))))
                                 for p in shared))
    row["diff_W_points"] = len(shared) if row["max_abs_diff_W"] is not None else 0
  return rows


def machine_info(backend: str) -> dict[str, Any]:
  """CPU model, core count, load, JAX version, backend, devices and date."""
  import os
  import platform
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


class JobError(RuntimeError):
  """A measurement job failed (its message is the job's last line of stderr)."""


# A fresh interpreter per job: `cli` first, as in every script (it sets XLA_FLAGS).
_WORKER = ("import json, sys; from superpos_jax import cli; from superpos_jax import baselines; "
           "job = baselines.Job(**json.load(sys.stdin)); "
           "print(json.dumps(baselines.measure(job)))")


def run_job(job: Job, *, isolate: bool) -> dict[str, Any]:
  """`measure(job)`, in a fresh process when `isolate` (so peak memory is the job's own).

  Raises:
    JobError: the isolated process failed (out of memory, for instance).
  """
  if not isolate:
    return measure(job)
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", _WORKER], input=json.dumps(dataclasses.asdict(job)),
                        capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
    raise JobError(f"{job.way} job failed (exit {proc.returncode}): {lines[-1]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark_workload(spec: sweep.SweepSpec, subsets: dict[str, dict[str, Any]], *,
                       backend: str, isolate: bool,
                       log: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, Any]]:
  """Measures every way of `WAYS` on `spec` and summarises them (see `summarize`).

  Args:
    spec: the workload (rng="shared").
    subsets: way -> {"per_activation": points of each activation to train (None = all),
      "steps_fraction": share of the steps to train (default 1)}; slow ways are measured
      on the subset and scaled linearly.
    backend: JAX backend.
    isolate: one fresh process per way.
    log: progress lines.
  """
  plan = {}
  for way in WAYS:
    sub = subsets.get(way, {})
    points = None
    if way in ("looped-jit", "looped-step"):
      points = tuple(int(p) for p in subset_points(spec, sub.get("per_activation")))
    steps = max(1, round(spec.steps * sub.get("steps_fraction", 1.0)))
    plan[way] = (points, None if steps == spec.steps else steps)
  report = sorted({p for points, _ in plan.values() if points for p in points})
  measured = {}
  for way, (points, steps) in plan.items():
    job = Job(way=way, spec=spec.to_dict(), points=points, steps=steps,
              report_points=tuple(report), backend=backend)
    measured[way] = run_job(job, isolate=isolate)
    m = measured[way]
    log(f"  {way:14s} {m['models']:>7,} models x {m['steps']:>6,} steps: compile "
        f"{m['compile_s']:7.2f} s, run {m['run_s']:8.3f} s "
        f"({m['models'] * m['steps'] / m['run_s']:,.0f} model-steps/s)")
  return summarize(spec, measured, isolate)


def scaling_series(specs: Sequence[sweep.SweepSpec], *, backend: str, isolate: bool,
                   log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
  """The engine's time and memory for each spec (growing grids); stops at the first failure.

  Returns:
    One dict per spec: models, steps, chunk_size, compile_s, run_s, model_steps_per_s,
    peak_rss_mb, rss_baseline_mb, peak_device_mb (memory None unless `isolate`), or
    models and error for a grid that failed (the series ends there).
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


def _fmt(v: Any, spec: str = ",.0f", missing: str = "-") -> str:
  return missing if v is None else format(v, spec)


def format_report(report: dict[str, Any], *, markdown: bool = False) -> str:
  """The benchmark report (`experiments/benchmark.py`'s JSON) as a text or markdown table."""
  mach = report["machine"]
  lines = [f"Measured on {mach['cpu']} ({mach['cores']} cores), {mach['backend']} backend with "
           f"{mach['device_count']} device(s), jax {mach['jax']}, {mach['date']}; load average "
           f"at start {mach['load_average_1_5_15min']}. Preset {report['preset']!r}.", ""]
  head = ["workload", "way", "models", "steps", "compile s", "run s", "model-steps/s",
          "vmapped speed-up (run)", "(compile+run)", "peak RSS MB", "max abs dW"]
  rows, notes = [], []
  for name, w in report["workloads"].items():
    for way, r in w["ways"].items():
      mark = ""
      if r["scaled_from"]:
        mark = f" [{len(notes) + 1}]"
        notes.append(f"{mark.strip()} {name} {way}: measured on {r['scaled_from']['models']:,} "
                     f"of {r['models']:,} models x {r['scaled_from']['steps']:,} of "
                     f"{r['steps']:,} steps in {r['scaled_from']['run_s']:.3g} s; run time "
                     f"scaled linearly")
      rows.append([f"{name} (n={w['n']}, m={w['m']})", way + mark, _fmt(r["models"]),
                   _fmt(r["steps"]), _fmt(r["compile_s"], ".2f"), _fmt(r["run_s"], ".3g"),
                   _fmt(r["model_steps_per_s"]), _fmt(r["speedup_vs_vmapped"], ".1f") + "x",
                   _fmt(r["speedup_total_vs_vmapped"], ".1f") + "x",
                   _fmt(r["peak_rss_mb"], ".0f", "n/a"), _fmt(r["max_abs_diff_W"], ".1e")])
  lines += _table(head, rows, markdown)
  lines += [""] + [("- " if markdown else "  ") + n for n in notes + report["notes"]]
  if report.get("scaling"):
    lines += ["", "Scaling of the vmapped engine:", ""]
    head = ["workload", "models", "steps", "chunk", "compile s", "run s", "model-steps/s",
            "peak RSS MB"]
    rows = []
    for name, series in report["scaling"].items():
      for r in series["rows"]:
        if "error" in r:
          rows.append([name, _fmt(r["models"]), _fmt(r["steps"]), "failed", "", "", "", ""])
          continue
        rows.append([name, _fmt(r["models"]), _fmt(r["steps"]), _fmt(r["chunk_size"]),
                     _fmt(r["compile_s"], ".2f"), _fmt(r["run_s"], ".3g"),
                     _fmt(r["model_steps_per_s"]), _fmt(r["peak_rss_mb"], ".0f", "n/a")])
    lines += _table(head, rows, markdown)
  if report.get("profile"):
    lines += ["", "Where the vmapped engine's time goes (one jax.profiler trace per workload, "
              "% of devices x wall time, superpos_jax/profiling.py):", ""]
    lines += _table(*profiling.profile_table(report["profile"]), markdown)
    lines += [""] + [("- " if markdown else "  ") + n for n in profiling.NOTES]
  return "\n".join(lines) + "\n"



def _table(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
  if markdown:
    return (["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] +
            ["| " + " | ".join(r) + " |" for r in rows])
  widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
  fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths)))
  return [fmt(head)] + [fmt(r) for r in rows]


def progress_overhead(spec: sweep.SweepSpec, devices: Sequence[jax.Device],
                      repeats: int = 2) -> dict[str, Any]:
  """Run time of the engine with the progress callback on vs off (best of `repeats`).

  The display itself goes to /dev/null; what is measured is the host callback the
  program makes once per log window and chunk.
  """
  import contextlib
  times: dict[bool, list[float]] = {False: [], True: []}
  for _ in range(repeats):
    for progress in (False, True):
      with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        res = sweep.run(spec, progress=progress, devices=devices)
      times[progress].append(res.meta["timings"]["run_s"])
  off, on = min(times[False]), min(times[True])
  return {"models": spec.num_models, "steps": spec.steps, "log_every": spec.log_every,
          "run_s_off": off, "run_s_on": on, "overhead_pct": 100.0 * (on / off - 1.0)}
