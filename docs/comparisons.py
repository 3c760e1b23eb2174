"""Generated regions that set the engine beside the tools a researcher would use instead.

Imported by docs/build.py (its `GENERATORS`); each function takes build's `load(name)`
(a committed JSON of figures/) and returns Markdown, so every number comes from a file
that code wrote:

  figures/benchmark_shared.json   benchmarks/benchmark.py --name benchmark_shared: every
                                  way, occhio's ModelGrid included, in one run
  figures/saelens_check.json      benchmarks/saelens_check.py: SAELens's trainer vs the
                                  SAE stage, one configuration
  figures/sae_recovery_summary.json  the SAE experiment (recovery, MMCS, SAELens's metrics)
"""

from __future__ import annotations

from typing import Callable

Load = Callable[[str], dict]
SHARED = "benchmark_shared.json"
ACTS = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}


def _table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _machine(b: dict) -> str:
  m = b["machine"]
  return (f"{m['cores']}-core {m['cpu']}, {m['backend']}, jax {m['jax']}, {m['date'][:10]}, "
          f"shared with other sessions' jobs: load average "
          f"{m['load_average_1_5_15min'][0]:.1f} at the start, "
          f"{m['load_average_end'][0]:.1f} at the end")


def notebook_speed(load: Load) -> str:
  """The TMS notebook's PyTorch loop against the engine, per workload, one run."""
  b = load(SHARED)
  rows = []
  for name, w in b["workloads"].items():
    ways = w["ways"]
    if "torch-eager" not in ways:
      continue
    rows.append([f"n = {w['n']}, m = {w['m']}", f"{ways['vmapped']['models']:,}",
                 f"{ways['vmapped']['model_steps_per_s']:,.0f}",
                 f"{ways['torch-eager']['model_steps_per_s']:,.0f}",
                 f"{ways['torch-eager']['speedup_vs_vmapped']:.1f}×"]
                + ([f"{ways['torch-compile']['speedup_vs_vmapped']:.1f}×"]
                   if "torch-compile" in ways else ["skipped"]))
  return (_table(["workload (7 activations)", "models", "engine model-steps/s",
                  "notebook loop model-steps/s", "engine faster by", "(torch.compile)"], rows)
          + f"\n\nOne run of `benchmarks/benchmark.py` ({_machine(b)}); "
            "`figures/benchmark_shared.json`. Ratios of run time, compile excluded.")


def occhio_table(load: Load) -> str:
  """occhio's ModelGrid against the engine on the ReLU workloads, with the landing check."""
  b = load(SHARED)
  rows, notes = [], []
  for name, w in b["workloads"].items():
    if "occhio" not in w["ways"]:
      continue
    e, o, c = w["ways"]["vmapped"], w["ways"]["occhio"], w["check"]
    if c["quantity"] == "phase":
      what, fmt = "phases", lambda v: f"{100 * v:.1f} %"
    else:
      what, fmt = "D*", lambda v: f"{v:.4f}"
    rows.append([f"{name}: n = {w['n']}, m = {w['m']}",
                 f"{e['models']:,} × {e['steps']:,}",
                 f"{e['model_steps_per_s']:,.0f}", f"{o['model_steps_per_s']:,.0f}",
                 f"{o['speedup_vs_vmapped']:.1f}×",
                 f"{e['peak_rss_mb']:,.0f} / {o['peak_rss_mb']:,.0f}",
                 f"{what}: {'yes' if c['holds'] else 'no'} (cross {fmt(c['cross'])}, "
                 f"seed to seed {fmt(c['within'])})"])
    if c["quantity"] == "phase":
      agree = c["closed-form agreement"]
      notes.append(f"{name}: the closed-form ReLU phase (Wattenberg) is reached by "
                   f"{100 * agree['engine']:.1f} % of the engine's models and "
                   f"{100 * agree['occhio']:.1f} % of occhio's; after "
                   f"{e['steps']:,} steps many n = 2 models are still near a boundary "
                   f"or between the thresholds (ambiguous: engine "
                   f"{100 * c['phase shares']['engine']['ambiguous']:.0f} %, occhio "
                   f"{100 * c['phase shares']['occhio']['ambiguous']:.0f} %), hence the "
                   "large seed-to-seed share.")
  return (_table(["ReLU workload", "models × steps", "engine model-steps/s",
                  "occhio model-steps/s", "engine faster by", "peak RSS MB engine / occhio",
                  "same result within seed noise?"], rows)
          + f"\n\nOne run of `benchmarks/benchmark.py` ({_machine(b)}); the engine ran before "
            "and after occhio and its row is the mean. \"Cross\": how far apart a model of "
            "each implementation lands (share of n = 2 phases that differ; mean |ΔD*|), "
            "\"seed to seed\": the same between two seeds of one implementation; the check "
            "holds when cross ≤ 1.5 × seed to seed + a floor (2 points / 0.01). "
          + " ".join(notes) + " `figures/benchmark_shared.json`.")


def saelens_table(load: Load) -> str:
  """SAELens's synthetic-data trainer against the SAE stage: wall time and MCC."""
  s = load("saelens_check.json")
  t, st = s["timings"], s["setting"]
  sparse = s["mean over sparse densities"]
  rows = [[name] + [f"{sparse[k]['engine'][a]:.3f} / {sparse[k]['saelens'][a]:.3f}"
                    for a in ACTS]
          for name, k in (("MCC, all features", "mcc"), ("MCC, embedded features", "mcc embedded"),
                          ("F1 of latents", "f1"), ("explained variance", "explained variance"))]
  return (f"{t['saes']} SAEs (the n = 10 study's toy models at toy seed {st['toy_seed']}: "
          f"{len(st['activations'])} activations × {len(st['densities'])} densities; "
          f"dictionary ×{st['dict_multiple']}, λ = {st['l1']}, {st['sae_spec']['steps']:,} "
          f"steps of {st['sae_spec']['batch_size']}): SAELens "
          f"{s['versions']['sae_lens']} trained them one by one in {t['saelens_train_s']:,.0f} s"
          f" ({t['saelens_torch_threads']} torch thread); the engine trained all of them in "
          f"one call of {t['engine_call_s']:,.1f} s ({t['engine_compile_s']:.1f} s of it "
          f"compiling): **{t['ratio_call']:.0f}× faster** ({t['ratio_run']:.0f}× without the "
          f"compile). On a shared {s['machine']['cores']}-core CPU (load average "
          f"{s['machine']['load_average_1_5_15min'][0]:.1f} at the end).\n\n"
          + _table(["mean over 1−S < 0.1, engine / SAELens"] + list(ACTS.values()), rows)
          + f"\n\nBoth scored by SAELens's definitions (the SAELens SAEs by its own "
            f"`eval_sae_on_synthetic_data`). Mean |MCC(engine) − MCC(SAELens)| over the "
            f"{t['saes']} toy models: {s['mcc: mean |engine - SAELens|']:.3f}; between two "
            f"SAE seeds of the engine: {s['mcc: mean |engine seed - engine seed|']:.3f}. "
            "`figures/saelens_check.json`.")


def sae_one_to_one_table(load: Load) -> str:
  """Recovery, MCC, uniqueness and F1 of ReLU / GELU / SiLU SAEs, sparse densities."""
  s = load("sae_recovery_summary.json")
  rows, studies = [], ("n10", "n40")
  key = next(k for k in s[studies[0]] if k.startswith("mean over sparse densities"))
  # Dictionary x1 at the L1 coefficients both studies trained.
  common = [k for k in s[studies[0]][key]["mcc"]["best seed"] if k.startswith("dict x1,")
            and all(k in s[st][key]["mcc"]["best seed"] for st in studies)]
  for study in studies:
    st = s[study]
    for setting in common:
      for name, label in (("fraction recovered", "recovered (max cos > 0.9)"),
                          ("mmcs", "MMCS"), ("mcc", "MCC (one-to-one)"),
                          ("uniqueness", "uniqueness"), ("f1", "F1 of latents")):
        v = st[key][name]
        rows.append([f"n = {st['toy']['n']}, λ = {setting.split('l1 ')[1]}", label]
                    + [f"{v['best seed'][setting][a]:.2f} / {v['typical seed'][setting][a]:.2f}"
                       for a in ACTS])
  return (_table(["study", "metric (dictionary ×1)"]
                 + [f"{n} best / typical" for n in ACTS.values()], rows)
          + "\n\nMeans over the sparse densities 1−S ∈ {0.03, 0.01, 0.003, 0.001}, over "
            "embedded features (MCC, uniqueness and F1 against them, every latent counted). "
            "Generated by `docs/build.py` from `figures/sae_recovery_summary.json`.")


def generators(load: Load) -> dict[str, Callable[[], str]]:
  return {"coming-from-notebook": lambda: notebook_speed(load),
          "coming-from-occhio": lambda: occhio_table(load),
          "coming-from-saelens": lambda: saelens_table(load),
          "sae-one-to-one-table": lambda: sae_one_to_one_table(load)}
