"""Does superposition's width-scaling law depend on the activation? (Liu, Liu & Gore 2025)

Their toy model (`bottleneck_normal_bias`: x' = f(WᵀW x + b), W ~ N(0, 1/m), b ~ N(0, 1)),
data (`power_law`: feature i present with p_i ∝ i^-a, Σp = 1, value U(0, 2); the density
axis carries a, `data.exponent_density`), loss (their MSE: importance 1/n) and optimiser
(`adamw_liu`: decay γ on W, γ < 0 pulls feature norms towards 1; warm-up, cosine to 5 %).
The hidden width m is a sweep over specs: one compiled grid per width, every width in
this one command. Parts of a preset (each a grid of activation × a × γ × seed per width):

  relu         ReLU on their data: exponents at γ = ±1 and the represented fraction vs γ
  activations  all seven activations and the ε-sigmoid at γ = ±1 on values U(0, 1)
               (`power_law_unit`: sigmoid and tanh cannot output values above 1)
  longer       paper preset only (the checks): ReLU trained on 8x the examples, to see
  n1000        what the short training costs the exponents; ReLU at their n = 1000; both
  n1000_longer together; and every activation on 8x the examples (strong, a = 1.25)
  activations_longer

Figures and scaling_law_summary.json (every number, per width, with Liu et al.'s read
off their figures: scaling_law_published.json).

  python experiments/scaling_law.py                  # paper preset (2 CPU cores)
  python experiments/scaling_law.py --preset quick   # seconds, figures in figures/quick/
  python experiments/scaling_law.py --preset full --backend gpu   # their size
"""

import json
import os
import sys
import time

from superpos_jax import cli, data, launch, spec as spec_module, summary_scaling

NAME = "scaling_law"
ACTIVATIONS = spec_module.STUDY_ACTIVATIONS + ("sigmoid_stretched",)
FOUR = (0.5, 1.0, 1.5, 2.0)
THEIR_WIDTHS = (10, 15, 25, 39, 63, 100)  # floor(exp(linspace(log 10, log 100, 6)))
THEIR_DECAYS = tuple(round(-1.0 + 2.0 * k / 9, 6) for k in range(10))  # linspace(-1, 1, 10)
THEIR_EXPONENTS = tuple(k / 8 for k in range(17))  # a = 1 + alpha, exp-10-3 and exp-10
# What every part shares: their model, init, optimiser, peak lr; loss = their MSE.
LIU = dict(model="bottleneck_normal_bias", init="normal", optimizer="adamw_liu", lrs=(1e-2,),
           importance_kind="explicit", eval_size=4096)
# A part: spec fields, with `exponents` (a, into densities) and `seeds` (a count).
PAPER = dict(n=200, steps=2_000, batch_size=256, seeds=3, data="power_law", activations=("relu",))
PRESETS = {
    # 2 CPU cores: n = 200 (n1000 checks it), 2,000 steps of 256 (theirs: 20,000 of 2,048;
    # the *longer parts train 8x the examples), 5 widths, 3 seeds.
    "paper": {"widths": (5, 8, 12, 19, 30), "parts": {
        "relu": dict(PAPER, exponents=FOUR, weight_decays=(-1.0, -0.5, 0.0, 0.5, 1.0)),
        "activations": dict(PAPER, exponents=(0.5, 1.25, 2.0), weight_decays=(-1.0, 1.0),
                            activations=ACTIVATIONS, data="power_law_unit"),
        "longer": dict(PAPER, exponents=(1.0, 2.0), weight_decays=(-1.0, 1.0), seeds=1,
                       steps=8_000, batch_size=512),
        "n1000": dict(PAPER, n=1000, exponents=(1.0, 2.0), weight_decays=(-1.0, 1.0), seeds=1),
        "n1000_longer": dict(PAPER, n=1000, exponents=(1.0, 2.0), weight_decays=(-1.0,), seeds=1,
                             steps=8_000, batch_size=512),
        "activations_longer": dict(PAPER, exponents=(1.25,), weight_decays=(-1.0,), seeds=1,
                                   steps=8_000, batch_size=512, activations=ACTIVATIONS,
                                   data="power_law_unit")}},
    # Their exp-10 + exp-10-3 grid (n = 1000, 6 widths, 10 decays, 17 exponents, 20,000
    # steps of 2,048, one seed) and the activations at that size: a GPU's work.
    "full": {"widths": THEIR_WIDTHS, "parts": {
        "relu": dict(n=1000, steps=20_000, batch_size=2048, seeds=1, data="power_law",
                     activations=("relu",), exponents=THEIR_EXPONENTS, weight_decays=THEIR_DECAYS),
        "activations": dict(n=1000, steps=20_000, batch_size=2048, seeds=3, data="power_law_unit",
                            activations=ACTIVATIONS, exponents=(0.0, 0.5, 1.0, 1.5, 2.0),
                            weight_decays=(-1.0, 1.0))}},
    "quick": {"widths": (3, 6), "parts": {
        "relu": dict(n=24, steps=60, batch_size=64, seeds=2, data="power_law", activations=("relu",),
                     exponents=(1.0, 2.0), weight_decays=(-1.0, 1.0), eval_size=256),
        "activations": dict(n=24, steps=60, batch_size=64, seeds=2, data="power_law_unit",
                            activations=("relu", "sigmoid_stretched"), exponents=(1.0,),
                            weight_decays=(-1.0, 1.0), eval_size=256)}},
}
DESCRIPTIONS = {
    "relu": "ReLU on their data (values U(0, 2)): exponents at weight decay -1 (strong "
            "superposition) and +1 (weak), the represented fraction against weight decay",
    "activations": "the seven activations and the sigmoid stretched to (-0.1, 1.1) at weight "
                   "decay -1 and +1, values U(0, 1) (sigmoid and tanh cannot exceed 1)",
    "longer": "ReLU as in relu, trained on 8x the examples (4x the steps, 2x the batch)",
    "n1000": "ReLU as in relu at n = 1000 (their n), the other settings the paper preset's",
    "n1000_longer": "ReLU at n = 1000 on 8x the examples, strong superposition: n and the "
                    "training length together",
    "activations_longer": "every activation of activations on 8x the examples, strong "
                          "superposition at a = 1.25: is the ranking a matter of training length?",
}
REUSED_S = 2.0  # a reused result loads in well under this; a training takes longer
PARSER = cli.experiment_parser(__doc__, PRESETS)
PARSER.add_argument("--widths", type=cli.int_list,
                    help="comma-separated hidden widths m (default from preset)")
PARSER.add_argument("--parts", type=cli.name_list, help="comma-separated parts (default: all)")


def spec_fields(part: dict, m: int) -> dict:
  """The `SweepSpec` fields of a part at width m."""
  fields = dict(LIU, **part, m=m)
  n = fields["n"]
  fields["densities"] = tuple(data.exponent_density(a) for a in fields.pop("exponents"))
  fields["seeds"] = tuple(range(fields["seeds"]))
  fields.update(importances=(1.0 / n,), importance_vectors=((1.0 / n,) * n,),
                log_every=max(1, fields["steps"] // 20))
  return fields


def build_parts(preset: str, args=None) -> dict:
  """`{part: [SweepSpec, one per width]}` of a preset (flags of `args`, if given, applied
  to every part)."""
  p = PRESETS[preset]
  widths = getattr(args, "widths", None) or p["widths"]
  parts = getattr(args, "parts", None) or tuple(p["parts"])
  unknown = sorted(set(parts) - set(p["parts"]))
  if unknown:
    raise cli.UserError(f"--parts: unknown {', '.join(unknown)}; valid: {', '.join(p['parts'])}")
  out = {}
  for part in parts:
    make = (lambda f: cli.spec_from_args(args, f)) if args is not None else (
        lambda f: spec_module.SweepSpec(**f))
    out[part] = [make(spec_fields(p["parts"][part], m)) for m in widths]
  return out


def build_specs(preset: str) -> list:
  """Every `SweepSpec` of a preset, one per (part, width), parts in order."""
  return [s for specs in build_parts(preset).values() for s in specs]


def published() -> dict | None:
  """Liu et al.'s digitised heatmaps (`experiments/scaling_law_published.py`), if there."""
  path = os.path.join(cli.REPO, "figures", "scaling_law_published.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  start, load_start = time.perf_counter(), os.getloadavg()
  parts = build_parts(args.preset, args)
  by_part, trained = {}, 0
  for part, specs in parts.items():
    by_part[part] = []
    for s in specs:
      t0 = time.perf_counter()
      by_part[part].append(launch.train_or_load(f"{NAME}-{part}-m{s.m}", s, args))
      trained += time.perf_counter() - t0 > REUSED_S
  if args.no_plot:
    return
  from superpos_jax.plotting import scaling as plots
  run = {"preset": args.preset, "wall s of this command (training and reuse)": time.perf_counter() - start,
         "specs trained by this command (the others reused)": trained,
         "load average (1 min) at start, end": [load_start[0], os.getloadavg()[0]],
         "niceness": os.nice(0), "cpu_count": os.cpu_count()}
  data_ = summary_scaling.scaling_summary(by_part, DESCRIPTIONS, published(), run)
  launch.save_outputs(args, NAME, next(iter(by_part.values()))[0], lambda: plots.figures(data_),
                      summarize=lambda folder: summary_scaling.save(NAME, data_, folder))


if __name__ == "__main__":
  sys.exit(cli.run(main))
