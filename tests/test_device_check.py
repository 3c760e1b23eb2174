"""benchmarks/device_check.py, the one GPU check, on CPU stand-ins: sections in their own
capped processes (cut, crashed, failed, not started, each said so in the merged report),
the warm-timing protocol, the agreement's NaN-aware comparison, the optional sections."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import jax
import numpy as np
import pytest

from superpos_jax import cli, plan, results, sweep
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import capped  # noqa: E402
import device_check  # noqa: E402
import device_env  # noqa: E402
import device_largest  # noqa: E402
import device_report  # noqa: E402
import device_sections  # noqa: E402
import warm  # noqa: E402

# One activation: each test compiles one or two programs, seconds each on the 2-core CPU.
TINY = SweepSpec(n=5, m=2, activations=("relu",), densities=(1.0, 0.1), importances=(0.7,),
                 seeds=(0, 3), steps=200, batch_size=64, eval_size=128, log_every=100)

# A section stand-in: writes its part as device_sections does, then ends as told.
STAND_IN = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    sys.path.insert(0, {benchmarks!r})
    import device_report
    name, how, out, run_id = sys.argv[1:5]
    part = device_report.Part(out, "cpu", name, run_id)
    if how == "done":
      part.put("grid", {{"name": name}})
      part.finish("done")
    elif how == "hang":  # one entry, then deaf to SIGTERM, with a grandchild
      part.put("probe", {{"steps": 10}})
      signal.signal(signal.SIGTERM, signal.SIG_IGN)
      child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
      open(os.path.join(out, "grandchild.pid"), "w").write(str(child.pid))
      print("hanging", flush=True)
      time.sleep(60)
    elif how == "abort":
      print("about to abort", flush=True)
      os.abort()
    elif how == "fail":
      part.finish("failed", "ValueError: bad thing")
      sys.exit(1)
""")


def _stand_in(tmp_path):
  script = tmp_path / "stand_in.py"
  script.write_text(STAND_IN.format(benchmarks=os.path.join(REPO, "benchmarks")))
  return lambda name, how: (lambda cap: [sys.executable, str(script), name, how,
                                         str(tmp_path), "run1"])


def _gone(pid: int, wait_s: float = 5.0) -> bool:
  """Whether process `pid` has ended (reaped, or a zombie) within `wait_s`."""
  t0 = time.monotonic()
  while time.monotonic() - t0 < wait_s:
    try:
      with open(f"/proc/{pid}/stat") as f:
        if f.read().split()[2] == "Z":
          return True
    except FileNotFoundError:
      return True
    time.sleep(0.1)
  return False


def test_a_cut_or_crashed_section_leaves_the_others_and_the_report_says_so(tmp_path):
  """Sections in their own process groups: one done, one deaf to SIGTERM in a sleep
  (killed at its cap with its grandchild, its first entry kept), one aborting, one
  failing; the merged report names each, and the not-run ones."""
  cmd = _stand_in(tmp_path)
  record = device_report.runs_path(str(tmp_path), "cpu")
  t0 = time.monotonic()
  outcomes = capped.run_in_turn(
      {"paper_n2": cmd("paper_n2", "done"), "paper_n200": cmd("paper_n200", "hang"),
       "agreement": cmd("agreement", "abort"), "workload_n2": cmd("workload_n2", "fail")},
      caps={"paper_n2": 30, "paper_n200": 2.0, "agreement": 30, "workload_n2": 30},
      deadline=time.monotonic() + 60, logs=device_report.logs_dir(str(tmp_path), "cpu"), record=record,
      tag={"run_id": "run1"}, echo=None, grace_s=0.5)
  assert time.monotonic() - t0 < 25
  assert outcomes["paper_n200"].status == "cut" and outcomes["paper_n200"].returncode == -9
  assert _gone(int((tmp_path / "grandchild.pid").read_text()))
  assert outcomes["agreement"].returncode == -6  # SIGABRT
  report = device_report.merge(str(tmp_path), "cpu")
  s = report["sections"]
  assert s["paper_n2"]["status"] == "done" and s["paper_n2"]["result"] == {"grid": {"name": "paper_n2"}}
  assert s["paper_n200"]["status"] == "cut" and s["paper_n200"]["result"] == {"probe": {"steps": 10}}
  assert "killed at its 2 s cap; its 1 finished entry is kept" in s["paper_n200"]["note"]
  assert s["agreement"]["status"] == "crashed" and "signal 6" in s["agreement"]["note"]
  assert "about to abort" in s["agreement"]["note"]
  assert s["workload_n2"]["status"] == "failed" and "bad thing" in s["workload_n2"]["note"]
  assert s["tms_n2"]["status"] == "not run"
  assert "hanging" in (tmp_path / "device_check_cpu_logs" / "paper_n200.log").read_text()
  json_path, md_path = device_report.write_report(str(tmp_path), "cpu", report)
  md = open(md_path).read()
  assert "| paper_n200 | cut |" in md and "| agreement | crashed |" in md
  assert json.load(open(json_path))["by_status"]["cut"] == ["paper_n200"]
  line = device_check.summary_line(report, json_path)
  assert "cut: paper_n200" in line and "crashed: agreement" in line and "\n" not in line


def test_deadline_and_missing_backend_leave_sections_not_started(tmp_path):
  cmd = _stand_in(tmp_path)
  late = capped.run_in_turn({"paper_n2": cmd("paper_n2", "done")}, caps={"paper_n2": 30},
                            deadline=time.monotonic() + 5, logs=device_report.logs_dir(str(tmp_path), "cpu"),
                            echo=None)
  assert late["paper_n2"].status == "not started" and "before the deadline" in late["paper_n2"].note
  stop = capped.run_in_turn(
      {"paper_n2": cmd("paper_n2", "fail"), "agreement": cmd("agreement", "done")},
      caps={"paper_n2": 30, "agreement": 30}, deadline=time.monotonic() + 60,
      logs=device_report.logs_dir(str(tmp_path), "cpu"), echo=None,
      stop_if=lambda name, o: f"{name} exited {o.returncode}" if o.returncode else None)
  assert stop["agreement"].status == "not started" and stop["agreement"].note == "paper_n2 exited 1"


def test_a_runner_killed_outright_takes_its_section_with_it(tmp_path):
  """SIGKILL to the runner (no chance to clean up): the section, which called
  die_with_parent, is killed by the kernel instead of running on."""
  section = tmp_path / "section.py"
  section.write_text(textwrap.dedent(f"""
      import os, sys, time
      sys.path.insert(0, {os.path.join(REPO, "benchmarks")!r})
      import capped
      capped.die_with_parent()
      open({str(tmp_path / "section.pid")!r}, "w").write(str(os.getpid()))
      time.sleep(60)
  """))
  runner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.join(REPO, "benchmarks")!r})
      import capped
      capped.run_capped([sys.executable, {str(section)!r}], cap_s=60,
                        log_path={str(tmp_path / "section.log")!r})
  """)])
  pid_file = tmp_path / "section.pid"
  t0 = time.monotonic()
  while not pid_file.exists() and time.monotonic() - t0 < 60:
    time.sleep(0.05)
  runner.kill()
  runner.wait()
  assert _gone(int(pid_file.read_text()))


def test_merge_ignores_a_stale_part_and_keeps_an_interrupted_one(tmp_path):
  """A part left by an earlier run is not this run's numbers; a part whose runner died
  before recording it is 'interrupted', its entries kept."""
  out = str(tmp_path)
  device_report.Part(out, "cpu", "paper_n2", "old").put("grid", {"name": "old"})
  device_report.Part(out, "cpu", "agreement", "new").put("spec", {"models": 3})
  capped.save_outcomes(device_report.runs_path(out, "cpu"),
                       {"paper_n2": capped.Outcome("exited", 1, 3.0, 75.0, ["Fatal"])},
                       run_id="new")
  s = device_report.merge(out, "cpu")["sections"]
  assert s["paper_n2"]["status"] == "crashed" and s["paper_n2"]["result"] == {}
  assert s["agreement"]["status"] == "interrupted" and s["agreement"]["result"] == {"spec": {"models": 3}}


def test_fit_steps_scales_to_the_device_and_the_time_left():
  spec = types.SimpleNamespace(log_every=50, steps=100)
  program = types.SimpleNamespace(compile_s=2.0, layout=types.SimpleNamespace(spec=spec))
  probe = warm.Probe(program, first_s=0.5, warm_s=0.01)  # 100 steps: 1e-4 s a step
  # Fast device: 2,000 steps would run 0.2 s; one run must last 1 s -> 10,000 steps.
  assert warm.fit_steps(probe, want=2000, runs=4, left_s=100, min_run_s=1.0) == 10_000
  # Little time: a compile (2 s) and 4 runs in 3 s -> 1 s / (4 x 1e-4 s) = 2,500 steps;
  # in less, never fewer than the workload's own 2,000.
  assert warm.fit_steps(probe, want=2000, runs=4, left_s=3.0, min_run_s=1.0) == 2_500
  assert warm.fit_steps(probe, want=2000, runs=4, left_s=0.0, min_run_s=1.0) == 2_000
  # A grid to project: its steps where they fit, else what fits, at least one window.
  assert warm.fit_steps(probe, want=2000, runs=2, left_s=100, min_run_s=1.0, grow=False) == 2000
  assert warm.fit_steps(probe, want=2000, runs=2, left_s=2.1, min_run_s=1.0, grow=False) == 500
  assert warm.fit_steps(probe, want=2000, runs=2, left_s=0.0, min_run_s=1.0, grow=False) == 50


def test_default_and_autotuned_rows_of_one_layout_agree():
  """The protocol on one layout compiled twice: the default row's program is its probe's
  (probe's first run = the row's first run, its warm run the row's first warm one), the
  autotuned row has its own compile, a third row reuses the default's program (no compile
  or first run of its own). Warm runs interleaved; each rate is the median warm run's, and
  the rows agree within this machine's noise, as a default and an autotuned row of one
  layout must (timing a first run against a warm one read 6x apart before)."""
  layout = plan.make_plan(dataclasses.replace(TINY, steps=1000), devices=jax.devices())
  pr = warm.probe(layout, 1000)
  programs = {"default": pr.program, "autotuned": warm.compile_layout(layout),
              "reused": pr.program}
  rows = {"default": warm.first_run(pr.program, probe=pr),
          "autotuned": warm.first_run(programs["autotuned"]),
          "reused": warm.first_run(pr.program, reused=True)}
  assert rows["default"]["first_run_s"] == round(pr.first_s, 4)
  assert rows["default"]["warm_runs_s"][0] == round(pr.warm_s, 5)
  assert rows["reused"]["first_run_s"] is None and rows["reused"]["compile_s"] is None
  warm.timed_runs(programs, rows, repeats=9, deadline=time.time() + 120)
  assert [len(rows[k]["warm_runs_s"]) for k in programs] == [11, 9, 10]
  for r in rows.values():
    assert r["model_steps_per_s"] == round(4 * 1000 / np.median(r["warm_runs_s"]))
  rates = {k: r["model_steps_per_s"] for k, r in rows.items()}
  # Within 1.67x: medians of 7 such runs stayed within 0.89-1.03 at load average 12.
  assert 0.6 < rates["default"] / rates["autotuned"] < 1.67, {k: r["warm_runs_s"] for k, r in rows.items()}
  assert 0.6 < rates["default"] / rates["reused"] < 1.67, {k: r["warm_runs_s"] for k, r in rows.items()}
  assert rows["default"]["dot_precisions"] == {"HIGHEST": sum(pr.program.dots.values())}
  assert rows["default"]["precision"] == "float32" and rows["autotuned"]["compile_s"] > 0


def test_autotune_drops_candidates_that_only_pad_and_takes_longer_windows(monkeypatch, tmp_path):
  """A chunk that adds padded slots without fewer chunks is never timed; window_steps sets
  the timing windows (CPU default: the old 10-step windows, at most the log window)."""
  from superpos_jax import autotune
  spec = SweepSpec(n=10, m=5, activations=("relu",), densities=tuple(np.geomspace(0.01, 1, 5)),
                   seeds=(0,), steps=2000, batch_size=1024, log_every=100)
  default = plan.make_plan(spec, devices=jax.devices())
  half = plan.make_plan(spec, devices=jax.devices(), chunk_size=default.chunk_size // 2)
  assert (default.chunk_size, default.n_chunks, half.chunk_size, half.n_chunks) == (5, 1, 2, 3)
  assert autotune._only_pads(half, default) and not autotune._only_pads(default, half)
  assert autotune.candidates(spec, jax.devices()) == [default]  # half pads, double = default
  assert autotune.short_spec(spec).steps == 20 and autotune.short_spec(spec).log_every == 10
  long = autotune.short_spec(spec, window_steps=500)
  assert (long.steps, long.log_every, long.num_models) == (1000, 500, spec.num_models)
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path))
  windows = []
  monkeypatch.setattr(autotune, "measure", lambda layout, w=None: windows.append(w) or 1.0)
  tuned = autotune.autotune(spec, jax.devices(), window_steps=500, remember=False)
  assert windows == [500] and tuned.autotuned["measured_steps"] == 1000
  autotune.autotune(spec, jax.devices(), remember=False)
  assert windows[-1] is None  # CPU: WINDOW_STEPS


def _context(**kw):
  return device_sections.Context(**dict(dict(
      devices=jax.devices(), budget=None, quick=True, deadline=time.time() + 120,
      min_run_s=0.01, repeats=2), **kw))


def test_a_row_the_time_left_cannot_hold_is_left_out_and_named(tmp_path):
  part = device_report.Part(str(tmp_path), "cpu", "workload_n2", "r")
  probe = types.SimpleNamespace(program=types.SimpleNamespace(compile_s=5.0))
  rows = device_sections.Rows(_context(deadline=time.time() + 10, repeats=3), part, probe)
  rows.rows["default"] = {"first_run_s": 0.1}
  assert rows.fits("tensorfloat32", 1)  # 5 s compile + 4 runs of 0.1 s, a third to spare
  assert not rows.fits("autotuned", 3)  # 15.4 s
  assert "autotuned" in part.data["result"]["left_out"] and "tensorfloat32" not in rows.left_out
  part.put("workload", {"name": "n2", "models": 12, "steps": 40, "steps_timed": 40, "min_run_s": 1})
  part.put("rows", {})
  assert "autotuned: left out, too little time" in (tmp_path / "device_check_cpu_parts" / "workload_n2.md").read_text()


def test_scaling_law_section_skips_without_its_module_and_times_a_stand_in(tmp_path, monkeypatch):
  part = device_report.Part(str(tmp_path), "cpu", "scaling_law", "r")
  with pytest.raises(device_sections.Skip, match=r"experiments/no_such_scaling_law\.py not present"):
    device_largest.scaling_law(_context(), part, "no_such_scaling_law")
  stand_in = types.ModuleType("stand_in_scaling_law")
  stand_in.PRESETS = {"quick": {}, "paper": {}, "full": {}}
  stand_in.build_specs = lambda preset: [
      dataclasses.replace(TINY, m=m, steps=20, log_every=10) for m in (1, 2)]
  monkeypatch.setitem(sys.modules, "stand_in_scaling_law", stand_in)
  device_largest.scaling_law(_context(), part, "stand_in_scaling_law")
  grids = part.data["result"]["grids"]
  assert set(grids) == {"n5_m1", "n5_m2"}
  for g in grids.values():
    assert g["row"]["model_steps_per_s"] > 0 and g["projected_full_s"] > 0
    assert g["how"].startswith("measured")  # 20 steps fit: the whole grid ran
  assert "| n5_m2 |" in (tmp_path / "device_check_cpu_parts" / "scaling_law.md").read_text()


def test_tms_grid_is_the_papers_resolution():
  spec = device_largest.tms_spec(quick=False)
  assert spec.num_models == 256 * 256 * 16 and spec.steps == 10_000
  assert spec.num_models * spec.steps == pytest.approx(1.05e10, rel=0.01)
  assert spec.activations == ("relu",) and (spec.n, spec.m) == (2, 1)


def test_agreement_counts_models_that_diverge_on_one_side_only():
  """A model whose weights are NaN on the device only is counted, never hidden by a max."""
  cpu = sweep.run(dataclasses.replace(TINY, steps=20, log_every=10), progress=False)
  W = np.array(cpu.data["W"])
  W.reshape(-1, *W.shape[-2:])[0] = np.nan  # the first relu model
  diverged = np.array(cpu.data["diverged"])
  diverged.reshape(-1)[0] = True
  dev = results.SweepResult(coords=cpu.coords, data=dict(cpu.data, W=W, diverged=diverged),
                            extra=cpu.extra, meta=cpu.meta)
  relu = device_sections.compare(dev, cpu, TINY.activations)["relu"]
  assert relu["device_only"] == 1 and relu["cpu_only"] == 0
  assert relu["diverged_device"] == 1 and relu["diverged_cpu"] == 0
  assert relu["compared"] == relu["models"] - 1 == 3 and relu["max_abs_dW"] == 0.0
  swapped = device_sections.compare(cpu, dev, TINY.activations)["relu"]
  assert swapped["cpu_only"] == 1 and swapped["device_only"] == 0


def test_environment_record_reads_the_cuda_plugin(monkeypatch):
  env = device_env.record(jax.devices("cpu"))
  assert env["backend"] == "cpu" and env["platform_version"] == "cpu" and env["cuda"] is None
  assert "default_matmul_precision" not in env  # the precision is each row's, from the run
  versions = types.SimpleNamespace(cuda_runtime_get_version=lambda: 12080,
                                   cuda_runtime_build_version=lambda: 12080,
                                   cuda_driver_get_version=lambda: 12090,
                                   cudnn_get_version=lambda: 91000,
                                   cuda_compute_capability=lambda i: 90)
  monkeypatch.setitem(sys.modules, "jax_plugins.cuda", types.SimpleNamespace(cuda_versions=versions))
  gpu = types.SimpleNamespace(platform="gpu", local_hardware_id=0)
  cuda = device_env.cuda_versions([gpu])
  assert cuda["runtime"] == 12080 and cuda["driver"] == 12090 and cuda["cudnn"] == 91000
  assert cuda["cublas"] is None and cuda["compute_capability"] == [90]


def test_sigterm_kills_the_running_section_and_still_merges(tmp_path, monkeypatch, capsys):
  """SIGTERM to the runner while a section hangs: the section's process group is killed,
  the merged report keeps the finished section and the cut one's entries, and the
  message says so (not 'no partial result was written')."""
  cmd = _stand_in(tmp_path)
  hows = {"paper_n2": "done", "paper_n200": "hang"}
  monkeypatch.setattr(device_check, "child_argv",
                      lambda args, name, run_id, cap: cmd(name, hows[name])(cap)[:-1] + [run_id])
  pid_file = tmp_path / "grandchild.pid"

  def terminate_once_hanging():  # the hang has saved its entry and started its grandchild
    t0 = time.monotonic()
    while not pid_file.exists() and time.monotonic() - t0 < 60:
      time.sleep(0.05)
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=terminate_once_hanging, daemon=True).start()
  try:
    status = cli.run(device_check.main, ["--backend", "cpu", "--out", str(tmp_path),
                                         "--sections", "paper_n2,paper_n200,agreement"])
  except SystemExit as e:
    status = e.code
  assert status == cli.EXIT_TERMINATED
  err = capsys.readouterr().err
  assert "no partial result" not in err and "merged report of what finished" in err
  assert _gone(int(pid_file.read_text()))
  s = json.loads((tmp_path / "device_check_cpu.json").read_text())["sections"]
  assert s["paper_n2"]["status"] == "done"
  assert s["paper_n200"]["status"] == "interrupted" and s["paper_n200"]["result"] == {"probe": {"steps": 10}}
  assert s["agreement"]["status"] == "not run"


def test_bad_input_is_one_line(capsys, tmp_path):
  assert cli.run(device_check.main, ["--out", str(tmp_path), "--sections", "paper,agreement"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: unknown section(s) paper") and "\n" not in err
  with pytest.raises(SystemExit) as e:
    device_check.parse_args(["--out", str(tmp_path), "--cap", "paper_n2"])
  assert e.value.code == 2
  assert device_check.parse_args(["--out", "x", "--cap", "tms_n2=30"]).cap == [("tms_n2", 30.0)]


def test_help_lists_every_section_with_its_cap(capsys):
  with pytest.raises(SystemExit) as e:
    device_check.parse_args(["--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  for s in device_report.SECTIONS:  # "  paper_n2        75  the paper ..."
    assert re.search(rf"^  {s.name} +{s.cap_s:.0f}  ", text, re.M), s.name
  required = sum(s.cap_s for s in device_report.SECTIONS if not s.optional)
  assert required < device_report.DEADLINE_S
  with open(os.path.join(REPO, "docs", "performance.md")) as f:
    doc = f.read()  # the docs' table of sections says what the registry says
  for s in device_report.SECTIONS:
    assert re.search(rf"^\| {s.name}( \(optional\))? \| {s.cap_s:.0f} \|", doc, re.M), s.name
  assert f"caps add up to {required:.0f} s" in doc and f"of the {device_report.DEADLINE_S:.0f} s" in doc


@pytest.mark.slow
def test_documented_command_on_cpu_with_tiny_caps(tmp_path):
  """The documented command, --backend cpu --quick, one section capped too tight to
  finish: the others' numbers and the merged report are there, which was cut is said."""
  env = dict(os.environ, PYTHONPATH=".", SUPERPOS_JAX_CACHE=str(tmp_path / "cache"))
  proc = subprocess.run(
      [sys.executable, "benchmarks/device_check.py", "--backend", "cpu", "--quick", "--out",
       str(tmp_path), "--sections", "paper_n200,agreement,workload_n2,workload_n200,scaling_law",
       "--cap", "workload_n200=4", "--deadline", "2000",  # the CPU is slower than a GPU
       *(f"--cap={k}=400" for k in ("paper_n200", "agreement", "workload_n2"))],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "cut: workload_n200" in proc.stderr.strip().splitlines()[-1]
  report = json.loads((tmp_path / "device_check_cpu.json").read_text())
  s = report["sections"]
  # scaling_law runs since experiments/scaling_law.py exists (its absence: the test
  # test_scaling_law_section_skips_without_its_module_and_times_a_stand_in)
  assert s["workload_n200"]["status"] == "cut" and s["scaling_law"]["status"] == "done"
  assert {s[k]["status"] for k in ("paper_n200", "agreement", "workload_n2")} == {"done"}
  paper = s["paper_n200"]["result"]
  assert paper["full"]["measured"] and paper["row"]["model_steps_per_s"] > 0
  dW = s["agreement"]["result"]["float32"]
  assert max(r["max_abs_dW"] for r in dW.values()) < 1e-5  # CPU against CPU
  assert s["agreement"]["result"]["tensorfloat32_used"] == "tensorfloat32"
  rows = s["workload_n2"]["result"]["rows"]
  assert rows["default"]["precision"] == "float32" and rows["tensorfloat32"]["precision"] == "tensorfloat32"
  if rows["autotuned"].get("reused"):  # same layout: same rate within noise
    assert 0.5 < rows["autotuned"]["model_steps_per_s"] / rows["default"]["model_steps_per_s"] < 2
  assert report["env"]["backend"] == "cpu"
  md = (tmp_path / "device_check_cpu.md").read_text()
  assert "| workload_n200 | cut |" in md and "| relu |" in md
  assert (tmp_path / "device_check_cpu_logs" / "workload_n200.log").exists()
