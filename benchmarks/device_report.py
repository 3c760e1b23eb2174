"""The device check's sections, the part each writes while it runs, and the merged report.

    part = Part(out, "gpu", "paper_n2", run_id)   # <out>/device_check_gpu_parts/paper_n2.json, .md
    part.put("phase_diagram", row)                 # saved at once (atomically)
    part.finish("done")
    report = merge(out, "gpu")                     # every part and how its process ended
    write_report(out, "gpu", report)               # <out>/device_check_gpu.json and .md

Nothing here imports jax: the runner and the merge hold no device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import device_tables

NAME = "device_check"


@dataclasses.dataclass(frozen=True)
class Section:
  """One section: its own process, at most `cap_s` seconds of it."""

  name: str
  cap_s: float
  title: str
  optional: bool = False


# Most valuable first: a check cut short keeps what matters most.
SECTIONS = (
    Section("paper_n2", 75, "the paper n=2 phase diagram (7 activations, 20x20 points x 10 "
            "seeds, 5,000 steps): compile, first run, warm rate, peak memory"),
    Section("paper_n200", 75, "the paper n=200 D* grid (7 activations x 20 densities, "
            "10,000 steps): same"),
    Section("agreement", 60, "every study activation on an n=10 grid, device against host "
            "CPU: max |dW| and divergences per activation, float32 and TF32"),
    Section("workload_n2", 60, "benchmark workload n2: default, TF32 and autotuned layouts, "
            "warm, interleaved"),
    Section("workload_n10", 60, "benchmark workload n10: same"),
    Section("workload_n200", 70, "benchmark workload n200: same"),
    Section("scaling_law", 90, "the scaling-law experiment's full grid (experiments/"
            "scaling_law.py): warm rate per width, projected full time", optional=True),
    Section("tms_n2", 120, "TMS section-3 resolution n=2 phase diagram, relu, 256x256 "
            "points x 16 seeds, 10,000 steps (1.05e10 model-steps): warm rate, projected "
            "time", optional=True),
)
BY_NAME = {s.name: s for s in SECTIONS}
DEADLINE_S = 450.0  # the whole check, 7.5 minutes: a 10-minute command with room to spare
MERGE_RESERVE_S = 5.0


def parts_dir(out: str, backend: str) -> str:
  """Where the sections' parts go (a folder per backend, so that checks of two backends
  in one --out never mix, and `--out figures` commits only the merged report)."""
  return os.path.join(out, f"{NAME}_{backend}_parts")


def logs_dir(out: str, backend: str) -> str:
  return os.path.join(out, f"{NAME}_{backend}_logs")


def runs_path(out: str, backend: str) -> str:
  return os.path.join(parts_dir(out, backend), "runs.json")


def _write(path: str, text: str) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


class Part:
  """What one section has measured so far, saved after every change (JSON and table)."""

  def __init__(self, out: str, backend: str, name: str, run_id: str, **config):
    os.makedirs(parts_dir(out, backend), exist_ok=True)
    self.base = os.path.join(parts_dir(out, backend), name)
    self.t0 = time.monotonic()
    self.data = {"section": name, "run_id": run_id, "status": "running",
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": 0.0,
                 "config": dict(config, backend=backend), "env": None, "result": {}}
    self.save()

  def save(self) -> None:
    self.data["elapsed_s"] = round(time.monotonic() - self.t0, 2)
    _write(self.base + ".json", json.dumps(self.data, indent=1))
    _write(self.base + ".md", device_tables.section_markdown(self.data["section"],
                                                            self.data["result"]))

  def put(self, key: str, value) -> None:
    self.data["result"][key] = value
    self.save()

  def finish(self, status: str, note: str | None = None) -> None:
    self.data["status"] = status
    if note:
      self.data["note"] = note
    self.save()


def _load(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _ended(run: dict, part: dict | None, kept: str) -> tuple[str, str]:
  """(status, note) of a section whose process ran."""
  if run["status"] == "cut":
    return "cut", f"killed at its {run['cap_s']:.0f} s cap; {kept}"
  rc = run["returncode"]
  if rc == 0 and part and part["status"] in ("done", "skipped"):
    return part["status"], part.get("note", "")
  if part and part["status"] == "failed":
    return "failed", f"{part.get('note', '')}; {kept}"
  how = f"killed by signal {-rc}" if rc and rc < 0 else f"exit status {rc}"
  last = next((line for line in reversed(run.get("tail", [])) if line.strip()), "")
  return "crashed", f"{how} (last line: {last[:300]!r}); {kept}"


def section_status(name: str, run: dict | None, part: dict | None) -> dict:
  """Status of one section from how its process ended (`run`) and what it wrote (`part`).

  Statuses: done, skipped (the section itself found nothing to run), cut (killed at its
  cap), failed (a Python error it reported), crashed (ended without saying why: an abort,
  a signal), not started (too little time left), interrupted (no runner record: the
  runner itself was stopped while it ran), not run (not asked for).
  """
  if part and run and part.get("run_id") != run.get("run_id"):
    part = None  # left by an earlier run: not this run's numbers
  result = part["result"] if part else {}
  kept = (f"its {len(result)} finished {'entry is' if len(result) == 1 else 'entries are'} kept"
          if result else "it had finished no entry")
  if run is None and part is None:
    status, note = "not run", "not among the sections run"
  elif run is None:
    status, note = ((part["status"], part.get("note", "")) if part["status"] != "running" else
                    ("interrupted", f"the runner was stopped while it ran; {kept}"))
  elif run["status"] == "not started":
    status, note = "not started", run.get("note", "")
  else:
    status, note = _ended(run, part, kept)
  return {"status": status, "note": note, "title": BY_NAME[name].title,
          "optional": BY_NAME[name].optional, "cap_s": run and run.get("cap_s"),
          "wall_s": run and run.get("wall_s"), "run_id": (part or run or {}).get("run_id"),
          "log": f"{NAME}_<backend>_logs/{name}.log", "part": f"{NAME}_<backend>_parts/{name}.json",
          "result": result,
          "config": part and part.get("config")}


def merge(out: str, backend: str) -> dict:
  """The merged report: every section's status and result, in `SECTIONS` order."""
  runs = _load(runs_path(out, backend)) or {}
  parts = {s.name: _load(os.path.join(parts_dir(out, backend), f"{s.name}.json"))
           for s in SECTIONS}
  sections = {s.name: section_status(s.name, runs.get(s.name), parts[s.name]) for s in SECTIONS}
  env = next((p["env"] for p in parts.values() if p and p.get("env")), None)
  by_status: dict[str, list[str]] = {}
  for name, s in sections.items():
    by_status.setdefault(s["status"], []).append(name)
  run_ids = sorted({s["run_id"] for s in sections.values() if s["run_id"]})
  return {"backend": backend, "merged": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "env": env,
          "run_ids": run_ids, "by_status": by_status, "sections": sections}


def write_report(out: str, backend: str, report: dict) -> tuple[str, str]:
  """<out>/device_check_<backend>.json and .md, each written atomically; their paths."""
  base = os.path.join(out, f"{NAME}_{backend}")
  _write(base + ".json", json.dumps(report, indent=1))
  _write(base + ".md", device_tables.report_markdown(report))
  return base + ".json", base + ".md"

