"""Sigmoid trained to convergence: do its speckled WᵀW (n=10) and its phase diagram (n=2) survive?

At the study's 10,000 steps the sigmoid is not converged (the median training loss still
changes by 64 % over the last 2,000 steps at n=10, 54 % at n=2; every other activation
1-5 %): it reaches the data's zeros only by saturating, so its weights keep growing.
Here the sigmoid models of both experiments are trained for LONG_STEPS = 50,000 steps
(where, in a 200,000-step trial run, the median relative change over the last 20 % of
steps had fallen below 1 % at both sizes) and for the study's 10,000, from the same starts
and data. n=10 is the feature_matrices grid; n=2 a coarser 10 x 10 grid with 3 seeds
(the full 20 x 20 x 10 for 50,000 steps would take about half an hour here). Figures: the
WᵀW and phase diagram at each length and the long runs' loss curves; numbers (each run's
standard summary, the WᵀW off-diagonal, the phase agreement between lengths) in
sigmoid_convergence_summary.json.

  python experiments/sigmoid_convergence.py                  # paper preset (~4 min on 2 cores)
  python experiments/sigmoid_convergence.py --preset quick   # seconds, figures/quick/
"""

import dataclasses
import sys

import numpy as np

from superpos_jax import cli, launch, summary_beyond

NAME = "sigmoid_convergence"
SHORT_STEPS = {"paper": 10_000, "quick": 100}  # the study's training length
PRESETS = {
    "paper": {
        "n10": dict(n=10, m=5, densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
                    importance_kind="geometric", importances=(0.7,), seeds=(0, 1, 2),
                    steps=50_000, activations=("sigmoid",)),
        "n2": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 10)),
                   importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 10)),
                   seeds=tuple(range(3)), steps=50_000, activations=("sigmoid",))},
    "quick": {
        "n10": dict(n=10, m=5, densities=(1.0, 0.1, 0.01), importance_kind="geometric",
                    importances=(0.7,), seeds=(0,), steps=300, log_every=50, eval_size=2048,
                    activations=("sigmoid",)),
        "n2": dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 4)),
                   importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 4)),
                   seeds=(0, 1), steps=300, log_every=50, eval_size=2048,
                   activations=("sigmoid",))},
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def build_specs(args):
  """`{(part, steps): spec}`: each part at its preset's (long) steps and at the study's."""
  specs = {}
  for part, preset in PRESETS[args.preset].items():
    long = cli.spec_from_args(args, preset)
    short = SHORT_STEPS[args.preset]
    specs[part, short] = dataclasses.replace(long, steps=short, log_every=min(long.log_every, short))
    specs[part, long.steps] = long
  return specs


def figures(runs, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  out = {}
  for (part, steps), res in runs.items():
    if part == "n10":
      out[f"gram_{steps}_steps"] = plotting.figure_gram(res, **kw)
    else:
      out[f"phase_{steps}_steps"] = plotting.figure_phase_diagram(res, **kw)
  for part in ("n10", "n2"):
    steps = max(s for p, s in runs if p == part)
    out[f"loss_{part}"] = plotting.figure_loss_curves(runs[part, steps], **kw)
  return out


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  runs = {key: launch.train_or_load(f"{NAME}-{key[0]}-{key[1]}", spec, args)
          for key, spec in build_specs(args).items()}
  if args.no_plot:
    return
  data = {"experiment": NAME}
  for part, name in (("n10", "feature_matrices"), ("n2", "phase_diagram")):
    data[part] = summary_beyond.training_length_summary(
        name, {f"{s} steps": r for (p, s), r in runs.items() if p == part})
  launch.save_outputs(args, NAME, runs[next(iter(runs))], lambda: figures(runs, args),
                      summarize=lambda folder: summary_beyond.save(NAME, data, folder))


if __name__ == "__main__":
  sys.exit(cli.run(main))
