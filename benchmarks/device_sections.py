"""One section of the device check, in its own process (benchmarks/device_check.py runs
each section this way, under its cap):

  python benchmarks/device_sections.py SECTION --out DIR --backend gpu --run-id ID --seconds S

It writes DIR/device_check_<backend>_parts/SECTION.json and .md after every entry it finishes, so a section
killed at its cap still leaves what it measured. It installs no SIGTERM handler: the
signal ends it at once, even inside a compile. Sections (device_report.SECTIONS):
paper_n2, paper_n200 (the paper grids), agreement (device against host CPU), workload_n2,
workload_n10, workload_n200 (the benchmark's workloads: default, autotuned, TF32) and
the optional largest workloads, scaling_law and tms_n2 (benchmarks/device_largest.py).
Timings follow benchmarks/warm.py: compile, first run and warm runs apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import sys
import os
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE, os.path.join(REPO, "experiments")]

import device_report  # noqa: E402

FAST = "tensorfloat32"
AGREEMENT = dict(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0,), batch_size=1024,
                 eval_size=4096)
END_MARGIN_S = 3.0  # stop starting work this long before the cap


class Skip(Exception):
  """The section has nothing to run here; the message says why."""


@dataclasses.dataclass
class Context:
  """What every section needs: devices, memory budget, time left, protocol settings."""

  devices: list
  budget: int | None
  quick: bool
  deadline: float  # time.time() by which the section should be done
  min_run_s: float
  repeats: int
  autotune: bool = True

  def left(self) -> float:
    return self.deadline - time.time()

  def default_layout(self, spec):
    """The layout `sweep.run` would use here, under the device's memory budget."""
    from superpos_jax import plan
    return plan.make_plan(spec, devices=plan.choose_devices(spec, self.devices),
                          max_memory=self.budget)


def log(msg: str) -> None:
  print(f"[device_check] {msg}", flush=True)


def probe_steps(spec) -> int:
  """A short run of `spec` for the probe: one log window, at most its steps."""
  return min(spec.steps, spec.log_every)


def timed_grid(ctx: Context, part, key: str, spec, *, probe: bool, runs: int,
               label: str = "") -> dict:
  """First run and warm runs of `spec`'s default layout, saved under `key` as they end.

  With `probe`, a short run first (its own compile) says how many of the steps fit the
  time left (`runs` executions); without, all the steps are compiled at once (one compile
  fewer: compiles are the slow part of a GPU check) and the compile time is saved before
  the first run starts. Returns the row (`warm.first_run`).
  """
  import warm
  layout = ctx.default_layout(spec)
  pr = None
  if probe:
    pr = warm.probe(layout, probe_steps(spec))
    part.put(key + "_probe", pr.describe())
    steps = warm.fit_steps(pr, want=spec.steps, runs=runs, left_s=ctx.left(), min_run_s=0.0,
                           grow=False)
    if steps < min(spec.steps, 4 * pr.steps):  # a projection either way: spare a compile
      steps = pr.steps
    reuse = steps == pr.steps
    program = pr.program if reuse else warm.compile_layout(warm.with_steps(layout, steps))
  else:
    reuse, program = False, warm.compile_layout(warm.with_steps(layout, spec.steps))
  part.put(key + "_compiled", {"steps": program.layout.spec.steps,
                               "compile_s": round(program.compile_s, 3)})
  rows = {key: warm.first_run(program, probe=pr if reuse else None)}
  part.put(key, rows[key])
  warm.timed_runs({key: program}, rows, repeats=ctx.repeats, deadline=ctx.deadline,
                  on_round=lambda r: part.put(key, r[key]))
  log(f"{label or key}: {spec.num_models:,} models, {rows[key]['steps']:,} of {spec.steps:,} "
      f"steps timed: {rows[key]['model_steps_per_s'] or 0:,} model-steps/s warm")
  return rows[key]


def whole_grid(row: dict, spec) -> dict:
  """What `sweep.run` of the whole grid takes: measured where all its steps ran, else
  projected from the warm (or, lacking one, the first) run's rate."""
  if row["steps"] == spec.steps:
    return {"measured": True, "wall_s": round(row["compile_s"] + row["first_run_s"] + row["copy_s"], 2),
            "how": f"measured: compile + first run + copy back, all {spec.steps:,} steps"}
  rate, which = ((row["model_steps_per_s"], "warm") if row["model_steps_per_s"] else
                 (row["models"] * row["steps"] / row["first_run_s"], "first-run"))
  run_s = spec.num_models * spec.steps / rate
  return {"measured": False, "wall_s": round(row["compile_s"] + run_s + row["copy_s"], 2),
          "how": f"projected: {row['steps']:,} of {spec.steps:,} steps timed, the rest at the "
                 f"{which} rate"}


def paper(ctx: Context, part, module_name: str) -> None:
  """A paper grid's preset, all its steps in one compiled call (as `sweep.run` trains it;
  the experiment scripts stage long runs for checkpoints, benchmarks/checkpoints.py says
  what that costs)."""
  from superpos_jax.spec import SweepSpec
  module = importlib.import_module(module_name)
  spec = SweepSpec(**module.PRESETS["quick" if ctx.quick else "paper"])
  part.put("grid", {"name": module_name, "models": spec.num_models, "steps": spec.steps,
                    "preset": "quick" if ctx.quick else "paper"})
  # All its steps at once, no probe: on the GPU it should take seconds (1.4e8 model-steps
  # at the 10^7 target), and the point is the whole grid's time, first run included.
  row = timed_grid(ctx, part, "row", spec, probe=False, runs=2, label=module_name)
  part.put("full", whole_grid(row, spec))


def compare(dev, cpu, activations) -> dict:
  """Per activation: divergences on each side (non-finite weights or the engine's
  `diverged` flag), models diverged on one side only, and the largest |dW| and relative
  eval-loss difference over the models finite on both sides."""
  import numpy as np
  out = {}
  for a in activations:
    d, c = dev.sel(activation=a), cpu.sel(activation=a)
    Wd, Wc = (np.asarray(r["W"]).reshape(-1, *np.shape(r["W"])[-2:]) for r in (d, c))
    ok_d = np.isfinite(Wd).all((1, 2)) & ~np.asarray(d["diverged"], bool).ravel()
    ok_c = np.isfinite(Wc).all((1, 2)) & ~np.asarray(c["diverged"], bool).ravel()
    both = ok_d & ok_c
    ld, lc = (np.asarray(r["eval_loss"], float).ravel()[both] for r in (d, c))
    out[a] = {"models": int(ok_d.size), "diverged_device": int((~ok_d).sum()),
              "diverged_cpu": int((~ok_c).sum()), "device_only": int((~ok_d & ok_c).sum()),
              "cpu_only": int((ok_d & ~ok_c).sum()), "compared": int(both.sum()),
              "max_abs_dW": float(np.abs(Wd[both] - Wc[both]).max()) if both.any() else None,
              "max_rel_d_eval_loss": (float((np.abs(ld - lc) / np.maximum(np.abs(lc), 1e-30)).max())
                                      if both.any() else None)}
  return out


def agreement(ctx: Context, part) -> None:
  """Every study activation on one small grid, on the device and on one host CPU device."""
  import jax
  from superpos_jax import sweep
  from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec
  spec = SweepSpec(**AGREEMENT, activations=STUDY_ACTIVATIONS, steps=30 if ctx.quick else 1000,
                   log_every=10 if ctx.quick else 100)
  part.put("spec", {"models": spec.num_models, "steps": spec.steps, "n": spec.n, "m": spec.m})
  cpu = sweep.run(spec, devices=jax.devices("cpu")[:1], progress=False)
  part.put("cpu_used", cpu.meta["engine"]["precision"])
  for precision in ("float32", FAST):
    dev = sweep.run(spec, devices=ctx.devices, matmul_precision=precision, progress=False,
                    max_memory=ctx.budget)
    part.put(precision + "_used", dev.meta["engine"]["precision"])  # what the run used
    part.put(precision, compare(dev, cpu, spec.activations))
    worst = max((r["max_abs_dW"] or 0.0) for r in part.data["result"][precision].values())
    log(f"agreement {precision}: max |dW| {worst:.2e}")


def autotuned(ctx: Context, base, pr):
  """`autotune.autotune` of `base`'s spec, measured afresh with windows of about
  `ctx.min_run_s / 4` seconds at the probe's rate. Returns (layout, what it measured)."""
  from superpos_jax import autotune
  window = max(autotune.WINDOW_STEPS, min(base.spec.steps,
                                          math.ceil(ctx.min_run_s / 8 / pr.step_s)))
  t0 = time.perf_counter()
  tuned = autotune.autotune(base.spec, base.devices, max_memory=ctx.budget, remember=False,
                            window_steps=window)
  info = {k: tuned.autotuned[k] for k in ("rates", "default", "chosen")}
  info.update(window_steps=window, seconds=round(time.perf_counter() - t0, 2))
  return dataclasses.replace(tuned, autotuned=None), info


class Rows:
  """A workload's rows: programs, their rows (`warm.first_run`), saved to the part as they
  change; rows the time left cannot hold are left out and named."""

  def __init__(self, ctx: Context, part, probe):
    self.ctx, self.part, self.probe = ctx, part, probe
    self.programs, self.rows, self.left_out = {}, {}, {}

  def add(self, row: str, program, **kw) -> None:
    import warm
    self.programs[row] = program
    self.rows[row] = dict(warm.first_run(program, probe=kw.pop("probe", None),
                                         reused=kw.pop("reused", False)), **kw)
    self.part.put("rows", self.rows)

  def fits(self, row: str, compiles: int) -> bool:
    """Whether `compiles` compiles (at the probe's compile time) and the row's runs (at
    the default's first run) fit the time left, with a third to spare."""
    need = (compiles * self.probe.program.compile_s
            + (1 + self.ctx.repeats) * self.rows["default"]["first_run_s"])
    if self.ctx.left() > 1.3 * need:
      return True
    self.left_out[row] = f"{self.ctx.left():.0f} s left, about {need:.0f} s needed"
    self.part.put("left_out", self.left_out)
    return False

  def time(self, *names: str) -> None:
    """Warm runs of `names`, interleaved, as many rounds as `ctx.repeats` and time allow."""
    import warm
    warm.timed_runs({k: self.programs[k] for k in names}, {k: self.rows[k] for k in names},
                    repeats=self.ctx.repeats, deadline=self.ctx.deadline,
                    on_round=lambda r: self.part.put("rows", self.rows))


def workload(ctx: Context, part, name: str) -> None:
  """One benchmark workload at the same steps in every row: the default layout and TF32
  timed warm and interleaved, then (before autotune's compiles, which no cap can stop
  short of the process) the autotuned layout interleaved with the default again."""
  import benchmark
  import warm
  from superpos_jax import autotune
  spec = benchmark.workload_spec(benchmark.PRESETS["quick" if ctx.quick else "full"], name)
  default = ctx.default_layout(spec)
  pr = warm.probe(default, spec.steps)
  part.put("probe", pr.describe())
  steps = warm.fit_steps(pr, want=spec.steps, runs=3 * (1 + ctx.repeats), left_s=ctx.left(),
                         min_run_s=ctx.min_run_s, compiles=5)
  part.put("workload", {"name": name, "models": spec.num_models, "steps": spec.steps,
                        "steps_timed": steps, "min_run_s": ctx.min_run_s})
  base = warm.with_steps(default, steps)
  rows = Rows(ctx, part, pr)
  if steps == pr.steps:
    rows.add("default", pr.program, probe=pr)
  else:
    rows.add("default", warm.compile_layout(base))
  if rows.fits(FAST, 1):
    rows.add(FAST, warm.compile_layout(dataclasses.replace(base, precision=FAST)))
  rows.time(*rows.programs)
  candidates = autotune.candidates(base.spec, base.devices, max_memory=ctx.budget)
  if ctx.autotune and rows.fits("autotuned", len(candidates) + 1):
    tuned, info = autotuned(ctx, base, pr)
    same = tuned == base
    rows.add("autotuned", rows.programs["default"] if same else warm.compile_layout(tuned),
             reused=same, autotune=info)
    rows.time("default", "autotuned")
  log(f"{name}: " + ", ".join(f"{k} {r['model_steps_per_s'] or 0:,}" for k, r in rows.rows.items())
      + f" model-steps/s ({steps:,} steps)")


def runner(name: str):
  """The function that runs section `name` (ctx, part)."""
  import device_largest
  table = {"paper_n2": lambda c, p: paper(c, p, "phase_diagram"),
           "paper_n200": lambda c, p: paper(c, p, "dims_per_feature"),
           "agreement": agreement,
           "scaling_law": device_largest.scaling_law, "tms_n2": device_largest.tms_n2}
  if name.startswith("workload_"):
    return lambda c, p: workload(c, p, name.removeprefix("workload_"))
  return table[name]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("section", choices=list(device_report.BY_NAME))
  p.add_argument("--out", required=True)
  p.add_argument("--backend", default="gpu")
  p.add_argument("--run-id", default="")
  p.add_argument("--seconds", type=float, required=True, help="this section's cap")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--min-run-s", type=float, default=1.0)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--skip-autotune", action="store_true")
  return p.parse_args(argv)


def main(argv=None) -> int:
  """Runs one section; 0 done or skipped, 1 failed, 2 no such backend here."""
  args = parse_args(argv)
  import capped
  capped.die_with_parent()  # a runner killed outright takes this section with it
  deadline = time.time() + args.seconds - END_MARGIN_S
  part = device_report.Part(args.out, args.backend, args.section, args.run_id,  # before jax
                            quick=args.quick, min_run_s=args.min_run_s, repeats=args.repeats,
                            cap_s=args.seconds)
  from superpos_jax import cli
  cli.configure_host(args.backend, compile_cache=False)  # before anything touches a device; compile times are measured
  try:
    import device_env
    from superpos_jax import launch
    devices = launch.select_devices(args.backend)
    part.data["env"] = device_env.record(devices)
    ctx = Context(devices, launch.default_memory_budget(devices), args.quick, deadline,
                  args.min_run_s, args.repeats, not args.skip_autotune)
    runner(args.section)(ctx, part)
    part.finish("done")
  except Skip as e:
    part.finish("skipped", str(e))
    log(f"{args.section} skipped: {e}")
  except cli.UserError as e:
    part.finish("failed", str(e))
    print(f"error: {e}", file=sys.stderr)
    return 2
  except Exception as e:  # noqa: BLE001 (recorded in the part, the traceback in the log)
    part.finish("failed", f"{type(e).__name__}: {e}".splitlines()[0][:500])
    traceback.print_exc()
    return 1
  return 0


if __name__ == "__main__":
  # As the module, not __main__: device_largest imports it, and must share its Skip.
  import device_sections
  sys.exit(device_sections.main())
