"""Where this reproduction disagrees with the study: which implementation choices explain it.

1. SoLU's D* at n=200 (the study's curve starts near 0.5 and ends near 0.05; ours starts
   near 0.09). Variants: softmax over the n features of an example (ours, the definition),
   over the batch, LayerNorm after SoLU (the original SoLU), the TMS notebook's small init,
   and softmax over the *instances* axis of an instance-batched PyTorch-style model (which
   couples the models of one tensor, so it is trained here by a small loop of its own).
2. GELU / SiLU n=2 phase diagrams (the study: "more monosemantic than ReLU when sparse").
   Variants: the paper setting, the tanh approximation of GELU, the notebook init, every
   point of a seed starting from the same W, shorter training; each reported for the best
   and the typical seed.

Writes <figures>/study_checks_summary.json and the figures named in it.

  python experiments/study_checks.py                  # paper preset (~15 min on 2 cores)
  python experiments/study_checks.py --preset quick   # seconds, figures/quick/
"""

import dataclasses
import json
import os
import sys

import numpy as np

from superpos_jax import activations, cli, launch, results, summary
from superpos_jax.spec import SweepSpec

NAME = "study_checks"
SOLU_VARIANTS = {
    "solu": "softmax over the n features of an example (the definition; ours)",
    "solu_batch": "softmax over the batch",
    "solu_ln": "LayerNorm after x*softmax(x) (the original SoLU)",
}
PRESETS = {
    "paper": dict(
        solu=dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 5)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=10_000),
        phase=dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 10)),
                   importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 10)),
                   seeds=tuple(range(10)), steps=5_000,
                   activations=("relu", "gelu", "gelu_tanh", "silu")),
        short_steps=1_000),
    "quick": dict(
        solu=dict(n=20, m=5, densities=(1.0, 0.05), importance_kind="uniform",
                  importances=(1.0,), seeds=(0,), steps=100, log_every=50, batch_size=256,
                  eval_size=1024),
        phase=dict(n=2, m=1, densities=(0.02, 0.2, 1.0), importance_kind="relative",
                   importances=(0.3, 1.0, 3.0), seeds=(0, 1, 2), steps=200, log_every=50,
                   eval_size=1024, activations=("relu", "gelu", "gelu_tanh", "silu")),
        short_steps=100),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def _layer_norm(z):
  import jax.numpy as jnp
  centred = z - jnp.mean(z, axis=0, keepdims=True)
  return centred / jnp.sqrt(jnp.mean(centred * centred, axis=0, keepdims=True) + 1e-5)


def register_variants() -> None:
  """The SoLU variants as registry activations (features on axis 0 of `[n, B]`)."""
  import jax
  for name, fn in (("solu_batch", lambda z: z * jax.nn.softmax(z, axis=-1)),
                   ("solu_ln", lambda z: _layer_norm(activations.solu(z)))):
    if name not in activations.names():
      activations.register(name, fn, SOLU_VARIANTS[name])


def solu_specs(preset):
  """The SoLU variant specs: one grid of the three activations, and the notebook init."""
  base = SweepSpec(**preset["solu"], activations=tuple(SOLU_VARIANTS))
  return {"solu": base,
          "solu_notebook_init": dataclasses.replace(base, activations=("solu",), init="notebook")}


def phase_specs(preset):
  """The GELU/SiLU phase-diagram variants, each one change away from the paper setting."""
  base = SweepSpec(**preset["phase"])
  return {"paper_setting": base,
          "notebook_init": dataclasses.replace(base, init="notebook"),
          "shared_init": dataclasses.replace(base, init_rng="shared"),
          "short_training": dataclasses.replace(base, steps=preset["short_steps"],
                                                log_every=min(base.log_every, preset["short_steps"]))}


def instance_softmax_dstar(spec, *, seed: int = 0) -> list[float]:
  """D* of SoLU with the softmax over the instances axis of one `[I, m, n]` weight tensor
  (I = the spec's densities, one per instance), trained as an instance-batched loop would
  train it; the "notebook" init's std counts these I instances."""
  import jax
  import jax.numpy as jnp
  import optax
  from superpos_jax import inits
  I, n, m, B = len(spec.densities), spec.n, spec.m, spec.batch_size
  dens = jnp.asarray(spec.densities, jnp.float32)[:, None, None]
  std = inits.init_std(n, m, spec.init, instances=I)
  params = {"W": std * jax.random.normal(jax.random.key(seed), (I, m, n)),
            "b": jnp.zeros((I, n))}

  def loss_fn(p, x):  # x: [I, B, n]
    z = jnp.einsum("imn,ibm->ibn", p["W"], jnp.einsum("imn,ibn->ibm", p["W"], x)) + p["b"][:, None]
    out = z * jax.nn.softmax(z, axis=0)  # over the instances: the tensor's first axis
    return jnp.sum(jnp.mean(jnp.sum((x - out) ** 2, -1), -1))

  opt = optax.adamw(spec.lrs[0], weight_decay=spec.weight_decay)

  def step(carry, t):
    p, o = carry
    u = jax.random.uniform(jax.random.fold_in(jax.random.key(seed + 1), t), (I, B, n))
    x = jnp.where(u < dens, u / dens, 0.0)
    g = jax.grad(loss_fn)(p, x)
    updates, o = opt.update(g, o, p)
    return (optax.apply_updates(p, updates), o), None

  (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), jnp.arange(spec.steps)))(params)
  return [float(m / jnp.sum(w * w)) for w in params["W"]]


def _solu_section(res_by_name, coupled):
  rows = {}
  for name, res in res_by_name.items():
    ends = summary.dstar_ends(res)
    for a, act in enumerate(res.coords["activation"]):
      rows[f"{act}" + ("" if name == "solu" else f" ({name.removeprefix('solu_')})")] = {
          "description": SOLU_VARIANTS.get(str(act), "notebook init (std sqrt(2/(m(n+20))))"),
          "dstar_densest": float(ends.dstar[a, 0].ravel()[0]),
          "dstar_sparsest": float(ends.dstar[a, 1].ravel()[0]),
          "frobenius_sq_sparsest": float(ends.frobenius_sq[a, 1].ravel()[0])}
  rows["solu (softmax over instances)"] = {
      "description": "softmax over the instances axis of one [I, m, n] tensor (couples the models)",
      "dstar_densest": coupled[int(np.argmax(res_by_name["solu"].coords["density"]))],
      "dstar_sparsest": coupled[int(np.argmin(res_by_name["solu"].coords["density"]))]}
  return {"densities": [float(d) for d in res_by_name["solu"].coords["density"]],
          "rule": "best seed (one seed)", "variants": rows}


def _phase_section(res_by_name):
  out = {}
  for name, res in res_by_name.items():
    bands = summary.density_bands()
    best = summary.superposition_fraction(res, seed_rule="best")
    typical = summary.superposition_fraction(res, seed_rule="per_seed")
    out[name] = {str(act): {"superposition_best_seed": dict(zip(bands, map(float, best[a]))),
                            "superposition_typical_seed": dict(zip(bands, map(float, typical[a])))}
                 for a, act in enumerate(res.coords["activation"])}
    out[name]["settings"] = {"init": res.spec.init, "init_rng": res.spec.init_rng,
                             "steps": res.spec.steps, "seeds": len(res.spec.seeds)}
  return out


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  register_variants()
  preset = PRESETS[args.preset]
  solu = {k: launch.train_or_load(f"{NAME}-{k}", s, args) for k, s in solu_specs(preset).items()}
  coupled = instance_softmax_dstar(solu_specs(preset)["solu"])
  phase = {k: launch.train_or_load(f"{NAME}-{k}", s, args) for k, s in phase_specs(preset).items()}
  if args.no_plot:
    return
  from superpos_jax import plotting
  folder = cli.figures_dir(args)
  launch.save_figures(args, NAME, {
      "solu_dstar": plotting.figure_dims_per_feature(solu["solu"]),
      "phase_basins": plotting.figure_phase_basins(phase["paper_setting"], closed_form=True),
      "phase_shared_init": plotting.figure_phase_diagram(phase["shared_init"]),
      "phase_notebook_init": plotting.figure_phase_diagram(phase["notebook_init"])}, folder)
  if args.explore:  # several results: one page each
    from superpos_jax.interactive import page
    for key, res in {**solu, **phase}.items():
      path = page.write(res, os.path.join(folder, f"{NAME}-{key}_explorer.html"))
      cli.log(args, f"[{NAME}] wrote {os.path.relpath(path)}")
  report = {"solu": _solu_section(solu, coupled), "phase": _phase_section(phase)}
  path = os.path.join(folder, f"{NAME}_summary.json")
  results.write_atomically(path, lambda f: f.write(json.dumps(report, indent=1).encode()))
  cli.log(args, f"[{NAME}] wrote {os.path.relpath(path)}")


if __name__ == "__main__":
  sys.exit(cli.run(main))
