"""Markdown tables of the device check: one per section (from its part's result, however
far it got) and the merged report. No jax."""

from __future__ import annotations


def _f(v, spec: str = ",.0f", missing: str = "n/a") -> str:
  return missing if v is None else format(v, spec)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
  return (["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
          + ["| " + " | ".join(r) + " |" for r in rows])


def _layout(row: dict) -> str:
  lay = row["layout"]
  return (f"chunk {lay['chunk_size']}{' spanning seeds' if lay['span_seeds'] else ''}, "
          f"{lay['chunks_per_activation']}/activation, {lay['devices']} dev")


def _memory(row: dict) -> str:
  peak = _f(row.get("peak_device_mb"), ",.0f")
  if row.get("peak_device_mb") is not None and not row.get("peak_rose"):
    peak = f"<= {peak}"  # the process's peak came from an earlier row
  return f"{peak} / {_f(row.get('xla_peak_mb'), ',.1f')}"


def _timing_cells(row: dict) -> list[str]:
  warm = row.get("warm_runs_s") or []
  compile_s = "same program" if row.get("reused") else _f(row["compile_s"], ".2f")
  return [_f(row["steps"]), compile_s, _f(row["first_run_s"], ".3f"),
          f"{_f(row['run_s'], '.3f')} ({len(warm)})", _f(row["model_steps_per_s"]),
          _memory(row), row["precision"] + "/" + ",".join(sorted(row.get("dot_precisions") or {}))]


TIMING_HEAD = ["steps timed", "compile s", "first run s", "warm run s, median (runs)",
               "model-steps/s (warm median)",
               "peak device MB (process / XLA)", "precision / dots"]


def paper_markdown(result: dict) -> list[str]:
  lines = []
  if "row" not in result and "row_compiled" in result:
    c = result["row_compiled"]
    lines.append(f"Compiled ({c['steps']:,} steps) in {c['compile_s']:.1f} s; its first run "
                 f"did not end.")
  if "row" in result:
    g, row = result["grid"], result["row"]
    lines += _table(["grid", "models x steps", *TIMING_HEAD],
                    [[g["name"], f"{g['models']:,} x {g['steps']:,}", *_timing_cells(row)]])
  if "full" in result:
    full = result["full"]
    lines += ["", f"Whole grid, as `sweep.run` would take it: {_f(full['wall_s'], ',.1f')} s "
                  f"({full['how']})."]
  return lines


def agreement_markdown(result: dict) -> list[str]:
  precisions = [p for p in ("float32", "tensorfloat32") if p in result]
  if not precisions:
    return []
  head = ["activation", "models"]
  for p in precisions:
    head += [f"{p}: diverged device / CPU", "one side only (device, CPU)", "max abs dW (both finite)"]
  rows = []
  for a, first in result[precisions[0]].items():
    cells = [a, _f(first["models"])]
    for p in precisions:
      r = result[p][a]
      cells += [f"{r['diverged_device']} / {r['diverged_cpu']}",
                f"{r['device_only']}, {r['cpu_only']}", _f(r["max_abs_dW"], ".2e")]
    rows.append(cells)
  used = ", ".join(f"{p}: {result[p + '_used']}" for p in precisions if p + "_used" in result)
  return _table(head, rows) + ["", f"Precision each run recorded (result metadata): {used}."]


def workload_markdown(result: dict) -> list[str]:
  rows = result.get("rows") or {}
  if "workload" not in result:
    return []
  w = result["workload"]
  out = _table(["row", "layout", *TIMING_HEAD],
               [[name, _layout(r), *_timing_cells(r)] for name, r in rows.items()]) + [""]
  tuned = rows.get("autotuned", {}).get("autotune")
  notes = [f"Workload {w['name']}: {w['models']:,} models, {w['steps']:,} steps in the "
           f"benchmark, {w['steps_timed']:,} timed (scaled so one run lasts >= "
           f"{w['min_run_s']} s)."]
  if tuned:
    notes.append(f"Autotune ({tuned['window_steps']}-step windows, {tuned['seconds']:.1f} s): "
                 + ", ".join(f"{k} {v:,}" for k, v in tuned["rates"].items())
                 + f"; chose {tuned['chosen']}.")
  for name, why in (result.get("left_out") or {}).items():
    notes.append(f"{name}: left out, too little time for it ({why}).")
  for name, r in rows.items():
    if r.get("reused"):
      notes.append(f"{name}: the default's layout, so the default's program, timed again "
                   f"as its own row.")
  return out + ["- " + n for n in notes]


def largest_markdown(result: dict) -> list[str]:
  grids = result.get("grids") or {}
  if not grids:
    return []
  rows = [[name, f"{g['models']:,} x {g['steps_full']:,}", *_timing_cells(g["row"]),
           _f(g.get("projected_full_s"), ",.0f")] for name, g in grids.items() if g.get("row")]
  return _table(["grid", "models x steps (full)", *TIMING_HEAD, "projected full run s"], rows)


def section_markdown(name: str, result: dict) -> str:
  """The table(s) of one section's result ('' while it has none)."""
  kind = name.split("_")[0]
  lines = {"paper": paper_markdown, "agreement": agreement_markdown,
           "workload": workload_markdown}.get(kind, largest_markdown)(result)
  return "\n".join(lines) + ("\n" if lines else "")


def _env_lines(env: dict | None) -> list[str]:
  if not env:
    return ["No section recorded the machine."]
  cuda = env.get("cuda") or {}
  return [f"- device: {env.get('device_kind')} x {env.get('device_count')} ({env.get('backend')}), "
          f"platform version {env.get('platform_version')!r}",
          f"- jax {env.get('jax')}, jaxlib {env.get('jaxlib')}, plugin packages "
          f"{env.get('cuda_plugin') or 'none'}",
          f"- CUDA runtime {cuda.get('runtime')}, driver {cuda.get('driver')}, cuDNN "
          f"{cuda.get('cudnn')}; nvidia-smi {env.get('nvidia_smi')}",
          f"- host: {env.get('cpu')}, {env.get('cores')} cores, load {env.get('load_average_1_5_15min')}; "
          f"settings {env.get('settings') or {}}; commit {env.get('git_commit')}"]


def report_markdown(report: dict) -> str:
  """The merged report: machine, what became of every section, then each one's tables."""
  lines = [f"# Device check ({report['backend']}), merged {report['merged']}", ""]
  lines += _env_lines(report.get("env")) + [""]
  lines += _table(["section", "status", "wall s / cap s", "note"],
                  [[name, s["status"] + (" (optional)" if s["optional"] else ""),
                    f"{_f(s['wall_s'], '.1f')} / {_f(s['cap_s'], '.0f')}", s["note"] or ""]
                   for name, s in report["sections"].items()])
  for name, s in report["sections"].items():
    body = section_markdown(name, s["result"]) if s["result"] else ""
    if body:
      lines += ["", f"## {name} ({s['status']}): {s['title']}", "", body.rstrip("\n")]
  return "\n".join(lines) + "\n"
