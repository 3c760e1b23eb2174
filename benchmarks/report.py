"""The benchmark's report (`benchmark.json`) as text or markdown tables, and its figures.

    print(format_report(report))                   # the terminal's table
    text = format_report(report, markdown=True)    # benchmark.md, pasted into the README
    figures = {"speed": figure_speed(report), "scaling": figure_scaling(report)}
"""

from __future__ import annotations

from typing import Any

import profiler
from harness import KNOWN_WAYS

_COLORS = dict(zip(KNOWN_WAYS, ("#4c72b0", "#dd8452", "#c44e52", "#8172b3", "#55a868",
                                "#937860", "#da8bc3")))


def _fmt(v: Any, spec: str = ",.0f", missing: str = "-") -> str:
  return missing if v is None else format(v, spec)


def _table(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
  """Lines of a table: markdown, or text with the first two columns left-aligned."""
  if markdown:
    return (["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] +
            ["| " + " | ".join(r) + " |" for r in rows])
  widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
  fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths)))
  return [fmt(head)] + [fmt(r) for r in rows]


def _bullets(notes: list[str], markdown: bool) -> list[str]:
  return [("- " if markdown else "  ") + n for n in notes]


def _ways_table(report: dict[str, Any], markdown: bool) -> list[str]:
  """Every workload's ways, with a numbered note per way measured on a subset."""
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
    for way in w.get("skipped", {}):  # the reasons are in the report's notes
      rows.append([f"{name} (n={w['n']}, m={w['m']})", way, "skipped"] + [""] * (len(head) - 3))
  checks = [_check_line(name, w) for name, w in report["workloads"].items() if w.get("check")]
  return (_table(head, rows, markdown) + [""] + _bullets(notes + checks + report["notes"],
                                                        markdown))


def _check_line(name: str, w: dict[str, Any]) -> str:
  """Where occhio's models landed against the engine's (`occhio_way.compare`)."""
  c = w["check"]
  verdict = "within seed noise" if c["holds"] else "NOT within seed noise"
  if c["quantity"] == "phase":
    cf = c["closed-form agreement"]
    return (f"{name} check: the n = 2 phase of a model differs between occhio and the "
            f"engine for {c['cross']:.1%} of (point, seed pair)s, between two seeds of one "
            f"implementation for {c['within']:.1%}: {verdict} ({c['rule']}); agreement "
            f"with the closed-form ReLU phase: engine {cf['engine']:.1%}, occhio "
            f"{cf['occhio']:.1%}.")
  d = c["dstar by density (seed mean)"]
  return (f"{name} check: D* = m/||W||_F^2 differs between occhio and the engine by "
          f"{c['cross']:.3f} on average (density, seed pair), between two seeds of one "
          f"implementation by {c['within']:.3f}: {verdict} ({c['rule']}); D* at the "
          f"densest / sparsest density, seed mean: engine {d['engine'][0]:.3f} / "
          f"{d['engine'][-1]:.3f}, occhio {d['occhio'][0]:.3f} / {d['occhio'][-1]:.3f}.")


def _scaling_table(report: dict[str, Any], markdown: bool) -> list[str]:
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
  return _table(head, rows, markdown)


def format_report(report: dict[str, Any], *, markdown: bool = False) -> str:
  """The benchmark report as text or markdown.

  Args:
    report: the JSON of `benchmark.py` (machine, preset, notes, workloads, and
      optionally scaling and profile).
    markdown: markdown tables (for benchmark.md and the README) instead of text.

  Returns:
    The machine line, the ways table with its notes, then the scaling and profile
    tables where the report has them.
  """
  mach = report["machine"]
  lines = [f"Measured on {mach['cpu']} ({mach['cores']} cores), {mach['backend']} backend with "
           f"{mach['device_count']} device(s), jax {mach['jax']}, {mach['date']}; load average "
           f"at start {mach['load_average_1_5_15min']}. Preset {report['preset']!r}.", ""]
  lines += _ways_table(report, markdown)
  if report.get("layouts"):
    import layouts
    lines += ["", "The default layout against the autotuned one (--chunk-size auto; "
              "benchmarks/layouts.py, best of 3 full runs each):", "",
              layouts.markdown(report["layouts"]).rstrip("\n")]
  if report.get("checkpoints"):
    import checkpoints
    lines += ["", "What checkpoints cost (benchmarks/checkpoints.py, best of 2 runs each):", "",
              checkpoints.markdown(report["checkpoints"]).rstrip("\n")]
  if report.get("scaling"):
    lines += ["", "Scaling of the vmapped engine:", ""] + _scaling_table(report, markdown)
  if report.get("profile"):
    lines += ["", "Where the vmapped engine's time goes (one jax.profiler trace per workload, "
              "% of devices x wall time, benchmarks/profiler.py):", ""]
    lines += _table(*profiler.profile_table(report["profile"]), markdown)
    lines += [""] + _bullets(profiler.NOTES, markdown)
  return "\n".join(lines) + "\n"


def _speed_bars(ax, report: dict[str, Any]) -> None:
  """One bar per workload and measured way (each workload's own ways, centred on it),
  the speed-up against vmapped written on top."""
  for i, w in enumerate(report["workloads"].values()):
    ways = [way for way in KNOWN_WAYS if way in w["ways"]]
    width = 0.8 / max(len(ways), 3)
    for j, way in enumerate(ways):
      r = w["ways"][way]
      x = i + (j - (len(ways) - 1) / 2) * width
      ax.bar(x, r["model_steps_per_s"], width * 0.95, color=_COLORS[way],
             hatch="//" if r["scaled_from"] else None, edgecolor="white",
             label=way if way not in ax.get_legend_handles_labels()[1] else None)
      if way != "vmapped":
        speedup = r["speedup_vs_vmapped"]
        ax.text(x, r["model_steps_per_s"] * 1.15,
                f"{speedup:.0f}x" if speedup >= 10 else f"{speedup:.2g}x",
                ha="center", va="bottom", fontsize=8)


def figure_speed(report: dict[str, Any]):
  """Grouped bars of model-steps/s per workload and way (log y), speed-ups written on top."""
  from matplotlib.figure import Figure
  from matplotlib.patches import Patch
  fig = Figure(figsize=(max(9.5, 2.4 * len(report["workloads"])), 4.8), layout="constrained")
  ax = fig.add_subplot()
  _speed_bars(ax, report)
  labels = [f"{name}: n={w['n']}, m={w['m']}\n{w['ways']['vmapped']['models']:,} models"
            for name, w in report["workloads"].items()]
  ax.set_xticks(range(len(labels)), labels)
  ax.set_yscale("log")
  ax.set_ylabel("model-steps per second (higher is better)")
  ax.set_ylim(top=ax.get_ylim()[1] * 3)
  handles, texts = ax.get_legend_handles_labels()
  handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//"))
  texts.append("measured on a subset, scaled")
  ax.legend(handles, texts, fontsize=8, ncols=3, loc="upper right")
  mach = report["machine"]
  ax.set_title("Training throughput, batch 1024: numbers on bars = how many times faster "
               "vmapped runs", fontsize=10)
  load = mach.get("load_average_1_5_15min")
  end = mach.get("load_average_end")
  fig.suptitle(f"{mach['cpu']}, {mach['cores']} cores, {mach['backend']} x"
               f"{mach['device_count']}, jax {mach['jax']}, {mach['date'][:10]}"
               + (f"; load average {load[0]:.1f} at the start" if load else "")
               + (f", {end[0]:.1f} at the end" if end else ""), fontsize=8)
  return fig


def figure_scaling(report: dict[str, Any]):
  """Log-log throughput and peak memory of the engine against the number of models."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 4.2), layout="constrained")
  speed, memory = fig.subplots(1, 2)
  for series in report["scaling"].values():
    rows = [r for r in series["rows"] if "error" not in r]
    if not rows:
      continue
    models = [r["models"] for r in rows]
    label = f"n={series['n']}, m={series['m']}, {rows[0]['steps']} steps"
    lines = speed.plot(models, [r["model_steps_per_s"] for r in rows], "o-", label=label)
    if rows[0]["peak_rss_mb"] is not None:
      memory.plot(models, [r["peak_rss_mb"] for r in rows], "o-", color=lines[0].get_color(),
                  label=label)
      memory.axhline(rows[0]["rss_baseline_mb"], color="grey", ls=":", lw=1)
  speed.set(xscale="log", yscale="log", xlabel="models in the grid",
            ylabel="model-steps per second", title="Throughput")
  memory.set(xscale="log", yscale="log", xlabel="models in the grid",
             ylabel="peak resident memory (MB)",
             title="Peak process memory\n(dotted: after importing jax)")
  if not memory.lines:
    memory.set_axis_off()
    memory.text(0.5, 0.5, "peak memory not measured: the jobs shared one process\n"
                "(run with --isolate)", ha="center", va="center", transform=memory.transAxes)
  for ax in (speed, memory):
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  mach = report["machine"]
  fig.suptitle(f"Scaling of the vmapped engine (relu, batch 1024): {mach['cpu']}, "
               f"{mach['cores']} cores, {mach['backend']}, jax {mach['jax']}", fontsize=9)
  return fig
