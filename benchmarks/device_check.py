"""The one check of a lent GPU: the most valuable numbers first, each section in its own
process under its own time cap, inside one deadline (7.5 minutes by default).

  PYTHONPATH=. python3 benchmarks/device_check.py --out DIR                 # on the GPU machine
  PYTHONPATH=. python3 benchmarks/device_check.py --backend cpu --quick --out DIR   # CPU stand-in

Only what a CUDA machine with JAX has is needed (JAX with CUDA, optax, numpy; no network,
no pip install). Sections, in order (cap in seconds; a section never runs past the time
left before the deadline, and is not started with under 15 s left):
  paper_n2        75  the paper n=2 phase diagram, all its steps in one compiled call:
                      compile, first run, copy back, warm rate, peak device memory
  paper_n200      75  the paper n=200 D* grid: same
  agreement       60  every study activation, n=10 grid, device against host CPU: max
                      |dW| over models finite on both, divergences on each side and on one
                      side only, at float32 and TF32; the precision each run recorded
  workload_n2     60  benchmark workload n2: default layout, TF32, then the autotuned one
                      (rows the time left cannot hold are left out, and named), same
                      steps (scaled so one run lasts >= --min-run-s), warm, interleaved
  workload_n10    60  same for n10
  workload_n200   70  same for n200
  scaling_law     90  optional: the scaling-law experiment's full grid per width (skipped
                      where experiments/scaling_law.py is absent), projected full time
  tms_n2         120  optional: TMS section-3 n=2 phase diagram, 256x256 points x 16 seeds,
                      10,000 steps (1.05e10 model-steps), timed in part, projected
Timing protocol (benchmarks/warm.py): compile, first execution, copy back and warm
executions apart; model-steps/s from the median warm execution.

Writes, as it goes: DIR/device_check_<backend>_logs/<section>.log (all the section
printed), DIR/device_check_<backend>_parts/<section>.json and .md (after each entry the
section finishes) and runs.json there (how each section's process ended); at the end
DIR/device_check_<backend>.json and .md, the merged report: every section's status
(done, cut at its cap, crashed, failed, skipped, not started) and every finished entry.
With --out figures only the merged report lands in the committed folder.

If the session is cut: SIGTERM or Ctrl-C of this command kills the running section and
still merges; a runner killed outright takes its section with it, and
`--merge-only --out DIR` (any machine, no device) merges the parts already there;
`--sections a,b --out DIR` reruns some sections into the same folder, the others' parts
are kept. Exit status 1 when a section was cut, crashed or failed (the report says which).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]

import capped  # noqa: E402
import device_report  # noqa: E402
from device_report import BY_NAME, SECTIONS  # noqa: E402
from superpos_jax import cli  # noqa: E402

CHILD = os.path.join(HERE, "device_sections.py")
EXIT_NO_BACKEND = 2  # a section's exit status when the backend is missing: stop there


def _cap(text: str) -> tuple[str, float]:
  name, _, seconds = text.partition("=")
  if name not in BY_NAME or not seconds:
    raise argparse.ArgumentTypeError(f"expected SECTION=SECONDS with SECTION one of "
                                     f"{', '.join(BY_NAME)}, got {text!r}")
  return name, cli.positive_float(seconds)


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--backend", choices=cli.BACKENDS, default="gpu", help="device to check (default gpu)")
  p.add_argument("--out", required=True, help="folder for the logs, parts and merged report")
  p.add_argument("--quick", action="store_true", help="tiny grids: checks that it works")
  p.add_argument("--sections", type=cli.name_list, default=tuple(BY_NAME),
                 help=f"comma-separated subset of {','.join(BY_NAME)} (run in this order)")
  p.add_argument("--deadline", type=cli.positive_float, default=device_report.DEADLINE_S,
                 help=f"seconds for the whole check (default {device_report.DEADLINE_S:.0f})")
  p.add_argument("--cap", type=_cap, action="append", default=[], metavar="SECTION=SECONDS",
                 help="another cap for a section (repeatable)")
  p.add_argument("--min-run-s", type=cli.positive_float, default=None,
                 help="shortest timed execution; workloads' steps are scaled up to it "
                      "(default 1.0, 0.05 with --quick)")
  p.add_argument("--repeats", type=cli.positive_int, default=3, help="warm runs per row (default 3)")
  p.add_argument("--skip-autotune", action="store_true", help="no autotuned rows")
  p.add_argument("--merge-only", action="store_true",
                 help="run nothing: merge the parts already in --out")
  return p.parse_args(argv)


def child_argv(args, name: str, run_id: str, cap_s: float) -> list[str]:
  """The command that runs section `name` for at most `cap_s` seconds."""
  argv = [sys.executable, "-u", CHILD, name, "--out", args.out, "--backend", args.backend,
          "--run-id", run_id, "--seconds", f"{cap_s:.1f}", "--repeats", str(args.repeats),
          "--min-run-s", str(args.min_run_s or (0.05 if args.quick else 1.0))]
  return argv + ["--quick"] * args.quick + ["--skip-autotune"] * args.skip_autotune


def run_sections(args, names, run_id: str) -> None:
  """Runs the sections in turn; a section that finds no such backend stops the rest."""
  caps = {s.name: s.cap_s for s in SECTIONS} | dict(args.cap)

  def no_backend(name, outcome):
    if outcome.status == "exited" and outcome.returncode == EXIT_NO_BACKEND:
      return f"{name} found no {args.backend} backend (see its log)"
    return None

  capped.run_in_turn(
      {name: lambda cap, name=name: child_argv(args, name, run_id, cap) for name in names},
      caps=caps, deadline=time.monotonic() + args.deadline - device_report.MERGE_RESERVE_S,
      logs=device_report.logs_dir(args.out, args.backend),
      record=device_report.runs_path(args.out, args.backend),
      tag={"run_id": run_id}, cwd=REPO, stop_if=no_backend)


def summary_line(report: dict, path: str) -> str | None:
  """One line naming the sections that did not finish (None if all did)."""
  bad = {k: v for k, v in report["by_status"].items()
         if k in ("cut", "crashed", "failed", "interrupted", "not started")}
  if not bad:
    return None
  return ("device check incomplete: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items())
          + f" (every finished section's numbers are in {path})")


def main(argv=None) -> None:
  args = parse_args(argv)
  names = [n for n in BY_NAME if n in args.sections]  # SECTIONS order
  unknown = [n for n in args.sections if n not in BY_NAME]
  if unknown:
    raise cli.UserError(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(BY_NAME)}")
  if args.quick and os.path.abspath(args.out) == os.path.join(REPO, "figures"):
    raise cli.UserError("--quick never writes into the committed figures/: give another --out")
  from superpos_jax import launch
  launch.prepare_folder(args.out, "--out")
  stopped = None
  if not args.merge_only:
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
      run_sections(args, names, run_id)
    except KeyboardInterrupt:
      stopped = ("interrupted", cli.EXIT_INTERRUPTED)
    except cli.Terminated:
      stopped = ("terminated (SIGTERM)", cli.EXIT_TERMINATED)
  report = device_report.merge(args.out, args.backend)
  json_path, md_path = device_report.write_report(args.out, args.backend, report)
  with open(md_path) as f:
    print(f.read())
  line = summary_line(report, json_path)
  if stopped:
    print(f"{stopped[0]}: the running section was killed; the merged report of what "
          f"finished is {json_path}", file=sys.stderr)
    raise SystemExit(stopped[1])
  if line:
    print(line, file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
  sys.exit(cli.run(main))
