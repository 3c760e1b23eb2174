"""Writes the generated parts of README.md and docs/ from figures/*.json and the code.

  python docs/build.py          # rewrite every generated region and docs/api.md
  python docs/build.py --check  # exit 1 with one line naming the first stale file

A generated region is the text between a line `<!-- generated: NAME -->` and the next
`<!-- end generated -->`; everything outside the regions is hand-written prose. Each
NAME is one function below, and every number it writes comes from a committed file
(`figures/*_summary.json`, `figures/reproduce_all_timings.json`, `figures/benchmark.json`,
`figures/explorer.json`, `figures/*.md` written by the benchmarks; docs/comparisons.py
writes the regions that compare the engine with other tools) or from the code's own
docstrings (api.md), so the Markdown cannot drift from them: `tests/test_docs.py` runs
`--check`.

`figures/checkpoints.md` is optional: until `benchmarks/checkpoints.py` has committed it,
its region says the cost is not measured yet.

Tooling outside the package: nothing in `superpos_jax` imports this file.
"""

import argparse
import ast
import glob
import importlib
import inspect
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_scaling  # noqa: E402  (the width-scaling regions, docs/build_scaling.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(REPO, "figures")
BEGIN = re.compile(r"^(?P<indent>[ \t]*)<!-- generated: (?P<name>[\w-]+) -->[ \t]*$")
END = "<!-- end generated -->"


def load(name: str) -> dict:
  with open(os.path.join(FIGURES, name)) as f:
    return json.load(f)


def pct(x: float) -> str:
  """0.691 -> '69.1 %', 1.0 -> '100 %' (one decimal, none when it is 0)."""
  v = round(100 * x, 1)
  return f"{v:.0f} %" if v == int(v) else f"{v:.1f} %"


def yes(holds: bool) -> str:
  return "**yes**" if holds else "**no**"


def table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


# ---------------------------------------------------------------------------- README

# A claim "holds" for a comparison between activations when the gap is at least this
# many points of the fraction of sparse n = 2 points in superposition (or, for "similar",
# at most this many): the rule the table's verdicts use, stated under the table.
GAP = 0.10


def results_table() -> str:
  """The study's claims against this reproduction's numbers, best and typical seed."""
  pd = load("phase_diagram_summary.json")
  sparse = pd["superposition_fraction"]["bands"].index("density < 0.1")
  sf = {rule: {a: v[sparse] for a, v in pd["superposition_fraction"][rule].items()}
        for rule in ("best seed", "typical seed")}
  fm = load("feature_matrices_summary.json")
  emb = fm["embedded_features"]["per_density"]
  m10 = fm["m"]
  conv10 = fm["convergence"]["median |relative loss change|"]
  dp = load("dims_per_feature_summary.json")
  n200, m200 = dp["n"], dp["m"]
  dstar = dp["dstar_ends"]["dims_per_feature"]
  frob = dp["dstar_ends"]["frobenius_sq"]
  counted = dp["dstar_ends"]["embedded features, D_i > 0.05"]
  pair_max = 2 * m200 / n200          # m dimensions hold at most m antipodal pairs
  pairs = {a: max(v) for a, v in dp["curves"]["fraction of features with |D_i - 1/2| < 0.02"].items()}
  si = load("solu_instances_summary.json")
  study = si["study (read off its figure, not computed)"]
  solu_def = si["variants"]["solu (definition)"]
  (solu_inst_name,) = [k for k, v in si["variants"].items() if v.get("instances")]
  solu_inst = si["variants"][solu_inst_name]

  def share(a, rule):
    return pct(sf[rule][a])

  def vs_relu(a, rule, fewer):
    gap = sf[rule]["relu"] - sf[rule][a]
    holds = gap >= GAP if fewer else abs(gap) <= GAP
    return f"{share(a, rule)} vs ReLU {share('relu', rule)}: {yes(holds)}"

  def counts(a):
    return ", ".join(f"{v:.0f}" for v in emb[a])

  one_seed = "one seed" if dp["seeds"] == 1 else "best seed only"
  best_only = "best seed only"
  ends = lambda d: f"{d[0]:.3f} → {d[1]:.3f}"
  rows = [
      ["ReLU superposes when sparse: below density 0.1 in the n = 2 diagram",
       "n = 2: share of points with 1−S < 0.1 in superposition",
       f"{share('relu', 'best seed')}: {yes(sf['best seed']['relu'] > 0.5)}",
       f"{share('relu', 'typical seed')}: {yes(sf['typical seed']['relu'] > 0.5)}"],
      ["GELU is markedly more monosemantic than ReLU when sparse", "the same share, GELU",
       vs_relu("gelu", "best seed", True), vs_relu("gelu", "typical seed", True)],
      ["SiLU likewise", "the same share, SiLU",
       vs_relu("silu", "best seed", True), vs_relu("silu", "typical seed", True)],
      ["Sigmoid's n = 2 diagram is similar to ReLU's", "the same share, sigmoid",
       vs_relu("sigmoid", "best seed", False), vs_relu("sigmoid", "typical seed", False)],
      ["Tanh behaves almost linearly at every sparsity",
       f"n = 10: features with ‖W_i‖ > 0.5 at 1−S = 1 … 0.001 (linear: {counts('linear')})",
       f"{counts('tanh')}: {yes(emb['tanh'] == emb['linear'])}", best_only],
      [f"Sigmoid superposes as soon as S > 0", f"the same count, sigmoid (more than m = {m10}"
       " is superposition); median loss change over the last 20 % of steps",
       f"{counts('sigmoid')}: {yes(all(v > m10 for v in emb['sigmoid'][1:]))}; "
       f"not converged ({pct(conv10['sigmoid'])} change)", best_only],
      ["SoLU: superposition at every sparsity (n = 10)", "the same count, SoLU",
       f"{counts('solu')}: {yes(all(v > m10 for v in emb['solu']))}", best_only],
      ["ReLU's D* is sticky at 1 and 1/2", f"n = {n200}: D* at 1−S = 1; largest share of "
       f"features with D_i within 0.02 of 1/2 (antipodal pairs; at most 2m/n = "
       f"{pct(pair_max)}; sticky: half of that)",
       f"{dstar['relu'][0]:.2f}; {pct(pairs['relu'])}: "
       f"{yes(abs(dstar['relu'][0] - 1) < 0.05 and pairs['relu'] >= pair_max / 2)}",
       one_seed],
      ["… and only ReLU's", "the same share, GELU / SiLU",
       f"{pct(pairs['gelu'])} / {pct(pairs['silu'])}: "
       f"{yes(max(pairs['gelu'], pairs['silu']) < pair_max / 2)}", one_seed],
      ["Sigmoid and SoLU pack nearly 20 features per dimension (D* ≈ 0.05)",
       f"D* and ‖W‖_F² at 1−S = 0.05 (D* = m/‖W‖_F² counts features only if "
       f"‖W_i‖ ≈ 1, so ‖W‖_F² ≤ n = {n200}); features with D_i > 0.05",
       f"sigmoid {dstar['sigmoid'][1]:.3f}, ‖W‖_F² {frob['sigmoid'][1]:.0f}, "
       f"{counted['sigmoid'][1]:.0f} features; SoLU {dstar['solu'][1]:.3f}, "
       f"{frob['solu'][1]:.0f}, {counted['solu'][1]:.0f}: "
       f"{yes(max(frob['sigmoid'][1], frob['solu'][1]) <= n200)} (large weights)", one_seed],
      ["Tanh's D* stays near 1", "D* at 1−S = 1 → 0.05",
       f"{ends(dstar['tanh'])}: {yes(abs(dstar['tanh'][1] - 1) < 0.05)} when sparse", one_seed],
      [f"SoLU's D* goes from ≈ {study['dstar_densest']} to ≈ {study['dstar_sparsest']}"
       " (read off the study's figure)",
       "D* at 1−S = 1 → 0.05: SoLU as defined; the softmax over the 20 instances of one"
       " tensor",
       f"{ends((solu_def['dstar_densest'], solu_def['dstar_sparsest']))}: **no**; "
       f"{ends((solu_inst['dstar_densest'], solu_inst['dstar_sparsest']))}: matches",
       one_seed],
  ]
  agree = pd["closed_form_agreement"]
  out = table(["the study claims", "measured", "best seed", "typical seed"], rows)
  out += (
      f"\n\nBest seed: at each grid point the seed of lowest loss on a shared evaluation set"
      f" (the best optimum training finds); typical seed: every (point, seed) pair"
      f" counted alike (what one training run usually gives). n = 2: {pd['seeds']} seeds,"
      f" {pd['steps']:,} steps; n = 10: {fm['seeds']} seeds, {fm['steps']:,} steps;"
      f" n = 200: {dp['seeds']} seed, {dp['steps']:,} steps. A comparison with ReLU holds"
      f" when the gap is at least {GAP * 100:.0f} points (\"similar\": at most"
      f" {GAP * 100:.0f}). Training is checked against the closed-form n = 2 ReLU phases"
      f" (Wattenberg): the best seed agrees at {pct(agree['best seed']['all'])} of the"
      f" {agree['best seed']['points']} points, the typical seed at"
      f" {pct(agree['typical seed']['all'])}. Generated by `docs/build.py` from"
      f" `figures/phase_diagram_summary.json`, `feature_matrices_summary.json`,"
      f" `dims_per_feature_summary.json` and `solu_instances_summary.json`.")
  return out


def reproduction_time() -> str:
  t = load("reproduce_all_timings.json")
  return (f"The paper presets took {t['total_seconds'] / 60:.1f} minutes"
          f" ({t['total_seconds']:,} s, peak memory {t['peak_memory_gib']} GiB) on a"
          f" {t['cpu_count']}-core CPU (`figures/reproduce_all_timings.json`).")


def benchmark_headline() -> str:
  b = load("benchmark.json")
  mach = b["machine"]
  parts, torch = [], []
  for name, w in b["workloads"].items():
    ways = w["ways"]
    if len(w["spec"]["activations"]) == 1:  # a ReLU workload (occhio's), not the study's grid
      continue
    parts.append(f"{ways['vmapped']['model_steps_per_s']:,.0f} (n = {w['n']})")
    if "torch-eager" in ways:
      torch.append(f"{ways['torch-eager']['speedup_vs_vmapped']:.1f}×")
  text = (f"On a {mach['cores']}-core {mach['cpu']} ({mach['backend']}, jax {mach['jax']}),"
          f" the engine trains the benchmark's 7-activation grids at "
          + ", ".join(parts) + " model-steps/s")
  if torch:
    text += (", " + " / ".join(torch) + " the rate of the TMS notebook's PyTorch loop"
             " in the same run")
  return text + " (`figures/benchmark.json`)."


# ---------------------------------------------------------------------------- docs/


def verbatim(rel: str, missing: str | None = None, fence: str = ""):
  """A generator that pastes the file `rel` of the repository (or `missing` when it is
  absent), in a fenced block of language `fence` if one is given."""
  def write() -> str:
    path = os.path.join(REPO, rel)
    if not os.path.exists(path):
      if missing is None:
        raise FileNotFoundError(path)
      return missing
    with open(path) as f:
      text = f.read().strip("\n")
    return f"```{fence}\n{text}\n```" if fence else text
  write.__doc__ = f"{rel}, verbatim"
  return write


def init_scale_table() -> str:
  """The init-scale summary: sparse superposition, closed-form agreement, D* per α."""
  s = load("init_scale_summary.json")
  best = s["superposition fraction, density < 0.1, by init scale"]
  typ = s["superposition fraction, density < 0.1, by init scale, typical seed"]
  agree = s["relu closed-form agreement by init scale"]
  dstar = s["dims_per_feature (densest, sparsest) by init scale"]
  long = s["n2 at init scale 3, 20000 steps"]
  steps = s["n2"]["steps"]
  acts = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "solu": "SoLU"}
  header = (["α", "n = 2 steps"] + [f"{name} superposing, best / typical" for name in acts.values()]
            + ["ReLU = closed form, best / typical", "ReLU D* sparsest (n = 200)"])
  rows = []
  for alpha in best:
    rows.append([alpha, f"{steps:,}"]
                + [f"{pct(best[alpha][a])} / {pct(typ[alpha][a])}" for a in acts]
                + [f"{pct(agree['best seed'][alpha])} / {pct(agree['typical seed'][alpha])}",
                   f"{dstar[alpha]['relu'][1]:.3f}"])
  lb = long["superposition fraction, density < 0.1, best seed"]
  lt = long["superposition fraction, density < 0.1, typical seed"]
  la = long["relu closed-form agreement"]
  rows.append([f"{long['run']['init_scales'][0]:g}", f"{long['run']['steps']:,}"]
              + [f"{pct(lb[a])} / {pct(lt[a])}" for a in acts]
              + [f"{pct(la['best seed'])} / {pct(la['typical seed'])}", "–"])
  return (table(header, rows) + "\n\nSuperposing: share of n = 2 points with 1−S < 0.1"
          " in superposition. Generated by `docs/build.py` from"
          " `figures/init_scale_summary.json`.")


def explorer_pages() -> str:
  """Size and load time of each committed explorer page (benchmarks/explorer_pages.py)."""
  e = load("explorer.json")
  rows = [[f"[{p['page']}](../figures/{p['page']})", f"{p['models']:,}", ", ".join(p["views"]),
           f"{p['bytes'] / 1e6:.2f} MB", f"{p['load_s_median']:.2f} s", f"{p['load_s_max']:.2f} s",
           f"{p['loss_curves_relative_error']:.1e}"] for p in e["pages"]]
  runs = len(e["pages"][0]["load_s"]) if e["pages"] else 0
  pd = next(p for p in e["pages"] if p["page"] == "phase_diagram_explorer.html")
  before, after = e["load_average_1min"]
  head = (f"The paper n = 2 page ({pd['models']:,} models) is {pd['bytes'] / 1e6:.2f} MB and"
          f" opens in {pd['load_s_median']:.2f} s (median; slowest {pd['load_s_max']:.2f} s):"
          f" targets under about 5 MB and under 2 s {yes(pd['bytes'] < 5e6 and pd['load_s_max'] < 2)}.")
  return (head + "\n\n" + table(["page", "models", "views", "size", f"load, median of {runs}",
                                  "slowest", "loss curves, largest relative error"], rows)
          + f"\n\nLoad: from navigation start to the first view drawn and answering clicks (the"
          f" page's own `performance.now()`). Most of it passes before the page's script starts,"
          f" parsing plotly.js and the page: on the n = 2 page the script starts at"
          f" {pd['stages_ms']['start'] / 1e3:.2f} s, its data are inflated and decoded by"
          f" {pd['stages_ms']['decoded'] / 1e3:.2f} s and drawn by"
          f" {pd['stages_ms']['drawn'] / 1e3:.2f} s (medians). Measured in {e['browser']}"
          f" (headless) on a {e['cpu_count']}-core"
          f" machine shared with other work (1-minute load average {before:g} before, {after:g}"
          f" after). Every page of the folder shares one `plotly.min.js` (plotly.js"
          f" {e['plotly_js_version']}, {e['plotly_js_bytes'] / 1e6:.1f} MB), read from disk"
          " once per page. Generated by `docs/build.py` from `figures/explorer.json`, which"
          " `python benchmarks/explorer_pages.py` writes.")


# The public names of api.md: (module, attribute, methods to list).
API = [
    ("superpos_jax.spec", "SweepSpec", ()),
    ("superpos_jax.spec", "SpecError", ()),
    ("superpos_jax.sweep", "run", ()),
    ("superpos_jax.results", "SweepResult", ("sel", "squeeze", "reduce_seeds", "to_xarray")),
    ("superpos_jax.results", "load", ()),
    ("superpos_jax.results", "save", ()),
    ("superpos_jax.train", "make_train", ()),
    ("superpos_jax.activations", "register", ()),
    ("superpos_jax.activations", "get", ()),
    ("superpos_jax.model", "register_model", ()),
    ("superpos_jax.data", "register_data", ()),
    ("superpos_jax.optimizers", "register_optimizer", ()),
    ("superpos_jax.host", "enable_compile_cache", ()),
    ("superpos_jax.host", "configure_host", ()),
    ("superpos_jax.interactive", "write_page", ()),
    ("superpos_jax.interactive", "figure_view", ()),
    ("superpos_jax.interactive", "figure_models", ()),
]


def _signature(obj) -> str:
  """`(a: int, *, b: str = 'x') -> T`, annotations as written in the code."""
  if inspect.isclass(obj) and "__init__" in vars(obj):
    target, drop_self = obj.__init__, True     # a dataclass's generated __init__
  else:
    target, drop_self = obj, False
  try:
    sig = inspect.signature(target)
  except (TypeError, ValueError):
    return ""
  params, star = [], False
  for p in list(sig.parameters.values())[drop_self:]:
    if p.kind is p.KEYWORD_ONLY and not star:
      params.append("*")
    star = star or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
    text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
    if p.annotation is not p.empty:
      text += f": {_annotation(p.annotation)}"
    if p.default is not p.empty:
      # A default whose repr names an address would change the page every run.
      default = repr(p.default)
      if re.search(r"<|0x", default):
        default = getattr(p.default, "__name__", type(p.default).__name__)
      text += f" = {default}" if p.annotation is not p.empty else f"={default}"
    params.append(text)
  out = f"({', '.join(params)})"
  if sig.return_annotation is not sig.empty and not inspect.isclass(obj):
    out += f" -> {_annotation(sig.return_annotation)}"
  return out


def _annotation(a) -> str:
  return a.strip("'\"") if isinstance(a, str) else inspect.formatannotation(a)


def _first_line(obj) -> str:
  doc = inspect.getdoc(obj) or ""
  return doc.split("\n\n")[0].replace("\n", " ").strip() or "(no docstring)"


def _entry(qualname: str, obj) -> str:
  sig = _signature(obj)
  out = f"### `{qualname}`\n\n"
  if sig:
    out += f"```python\n{qualname.rsplit('.', 1)[-1]}{sig}\n```\n\n"
  return out + _first_line(obj) + "\n"


def api() -> str:
  """docs/api.md's body: each public name's signature and first docstring paragraph."""
  sys.path.insert(0, REPO)
  parts = ["## Sweeps, results, training, registries\n"]
  for module, attr, methods in API:
    obj = getattr(importlib.import_module(module), attr)
    parts.append(_entry(f"{module}.{attr}", obj))
    for meth in methods:
      parts.append(_entry(f"{module}.{attr}.{meth}", getattr(obj, meth)))
  plotting = importlib.import_module("superpos_jax.plotting")
  names = [n for n in plotting.__all__ if inspect.isfunction(getattr(plotting, n))]
  parts.append("## `superpos_jax.plotting`\n\n" + _first_line(plotting) + "\n")
  for prefix in ("figure_", "plot_", ""):
    for name in sorted(n for n in names if n.startswith(prefix)):
      if prefix or not name.startswith(("figure_", "plot_")):
        parts.append(_entry(f"superpos_jax.plotting.{name}", getattr(plotting, name)))
  return "\n".join(parts).rstrip("\n")


def architecture() -> str:
  """docs/architecture.md's module table, read from the code: every module of the package
  with the first sentence of its docstring and the package modules it imports, ordered
  by layer (a module's layer is one more than the highest layer it imports: leaves are 0)."""
  sys.path.insert(0, REPO)
  from superpos_jax import provenance
  graph = provenance.module_graph()
  layer = {}

  def depth(m, path=()):
    if m not in layer:
      assert m not in path, f"import cycle: {' -> '.join(path + (m,))}"
      layer[m] = 1 + max((depth(d, path + (m,)) for d in graph[m]), default=-1)
    return layer[m]
  rows = []
  for m in sorted(graph, key=lambda m: (depth(m), m)):
    rel = m.replace(".", "/")
    path = os.path.join(REPO, rel + ".py")
    if not os.path.exists(path):
      path = os.path.join(REPO, rel, "__init__.py")
    with open(path) as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    what = re.split(r"\.\s+(?=[A-Z`(])", first)[0].rstrip(".")  # not "et al. 2022"
    short = lambda name: name.removeprefix("superpos_jax.")
    uses = ", ".join(f"`{short(d)}`" for d in sorted(graph[m], key=lambda d: (layer[d], d)))
    rows.append([str(layer[m]), f"`{short(m)}`", what.replace("|", "\\|"), uses or "—"])
  return table(["layer", "module", "what", "imports (from this package)"], rows)


GENERATORS = {
    "results-table": results_table,
    "reproduction-time": reproduction_time,
    "benchmark-headline": benchmark_headline,
    "benchmark-tables": verbatim("figures/benchmark.md"),
    "layouts-table": verbatim("figures/layouts.md"),
    "checkpoint-cost": verbatim(
        "figures/checkpoints.md",
        missing="Not measured yet: `python benchmarks/checkpoints.py --out figures` writes"
                " `figures/checkpoints.json` and `figures/checkpoints.md`, and this"
                " region then shows its table (`python docs/build.py`)."),
    "init-scale-table": init_scale_table,
    "compile-cache": verbatim(
        "figures/compile_cache.md",
        missing="Not measured yet: `python benchmarks/compile_cache.py` writes"
                " `figures/compile_cache.json` and `.md`, and this region shows its table."),
    "explorer-pages": explorer_pages,
    "example-script": verbatim("examples/weight_decay.py", fence="python"),
    "api": api,
    "architecture": architecture,
    "benchmark-shared-tables": verbatim("figures/benchmark_shared.md"),
    **build_scaling.GENERATORS,
}
# The engine beside the notebook's loop, occhio and SAELens (docs/comparisons.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import comparisons  # noqa: E402

GENERATORS.update(comparisons.generators(lambda name: load(name)))

def markdown_files() -> list[str]:
  """README.md and every page of docs/, relative to the repository."""
  return ["README.md"] + sorted(os.path.relpath(p, REPO)
                                for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


def render(text: str, cache: dict) -> str:
  """`text` with every generated region rewritten (`cache`: generator name -> output)."""
  lines, out, i = text.split("\n"), [], 0
  while i < len(lines):
    out.append(lines[i])
    begin = BEGIN.match(lines[i])
    i += 1
    if not begin:
      continue
    name, indent = begin["name"], begin["indent"]
    if name not in GENERATORS:
      raise SystemExit(f"unknown generated region {name!r}")
    while i < len(lines) and lines[i].strip() != END:
      if BEGIN.match(lines[i]):
        raise SystemExit(f"region {name!r} has no {END!r} before the next region")
      i += 1
    if i == len(lines):
      raise SystemExit(f"region {name!r} has no {END!r}")
    if name not in cache:
      cache[name] = GENERATORS[name]()
    # Blank lines around the content, so a table or paragraph never runs into a marker.
    out += [""] + [indent + line if line else line for line in cache[name].split("\n")] + [""]
    out.append(lines[i])
    i += 1
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--check", action="store_true",
                 help="write nothing; exit 1 naming the first file that is out of date")
  args = p.parse_args(argv)
  cache = {}
  for rel in markdown_files():
    path = os.path.join(REPO, rel)
    with open(path) as f:
      old = f.read()
    new = render(old, cache)
    if new == old:
      continue
    if args.check:
      print(f"stale: {rel} (run python docs/build.py)")
      return 1
    with open(path, "w") as f:
      f.write(new)
    print(f"wrote {rel}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
