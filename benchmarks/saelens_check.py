"""The SAE stage against SAELens itself: one SAE configuration trained both ways.

SAELens (PyPI `sae-lens`, the `saelens` extra: pip install -e '.[saelens]' after a CPU
torch) trains SAEs on synthetic data with known features (`sae_lens.synthetic`). Here
its trainer (`train_toy_sae`, a standard ReLU SAE) trains one SAE per toy model of the
SAE experiment's n = 10 study (experiments/sae_recovery.py, paper preset, toy seed 0:
7 activations x 7 densities), one after another, on the toy model's own data: a
`FeatureDictionary` whose vectors are the columns of W and an `ActivationGenerator`
that fires feature i with probability 1-S at a U[0, 1) value, as the toy model's data.
The engine trains the same SAEs (dictionary x1, L1 0.1, 1,500 Adam steps of 256, lr
3e-3) in one compiled call (`sae_sweep.run`), and again with 3 SAE seeds for the seed
noise. Both are scored by SAELens's definitions: the SAELens SAEs by its own
`eval_sae_on_synthetic_data` (and by `sae_metrics` on the same matrices, which must
agree), the engine's by `sae_metrics` on the statistics its program stores.

Where SAELens's API differs (it cannot be told otherwise): its L1 term is
λ Σ_j c_j ‖d_j‖ with free decoder norms (the engine keeps them at 1, so the terms agree
only at unit norm); it clips the gradient norm at 1; its decoder starts from a
Kaiming-uniform draw scaled to norm 1 (decoder_init_norm = 1.0; the engine: normal
columns at norm 1); torch draws the data (Bernoulli mask, then uniform values).

Writes <figures>/saelens_check.json (figures/ for the full preset, figures/quick/ for
the quick one) and prints the table.

  python benchmarks/saelens_check.py                  # full (minutes; SAELens one by one)
  python benchmarks/saelens_check.py --preset quick   # seconds: checks that it works
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # SAELens's and occhio's progress bars

import numpy as np

from superpos_jax import cli, launch, results
from superpos_jax.sae import metrics as sae_metrics
from superpos_jax.sae import summary as summary_sae

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(cli.REPO, "experiments"))
import sae_recovery  # noqa: E402

NAME = "saelens_check"
STUDY = "n10"
SETTING = dict(dict_multiple=1, l1=0.1, toy_seed=0)
PRESETS = {"full": dict(experiment=[], eval_samples=16_384, noise_seeds=(0, 1, 2)),
           "quick": dict(experiment=["--preset", "quick", "--activations", "relu,gelu",
                                     "--densities", "0.3,0.03", "--steps", "100",
                                     "--sae-steps", "50"], eval_samples=2048,
                         noise_seeds=(0, 1))}
SAELENS_MISSING = "sae-lens is not installed (pip install -e '.[saelens]', after a CPU torch)"


def parse_args(argv=None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=sorted(PRESETS), default="full")
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"),
                 help="the toy models' cache (the SAE experiment's; default runs/)")
  p.add_argument("--figures", default=None,
                 help="folder for saelens_check.json (default figures/, figures/quick/)")
  return p.parse_args(argv)


def toy_models(args):
  """The SAE experiment's n = 10 toy models (its cache, else trained) at toy seed 0, and
  its SAE spec at the one setting, one SAE seed."""
  exp = sae_recovery.PARSER.parse_args(PRESETS[args.preset]["experiment"] +
                                       ["--out", args.out, "--quiet", "--no-plot"])
  toy_spec, sae_spec = sae_recovery.build_specs(exp)[STUDY]
  toy = launch.train_or_load(f"{sae_recovery.NAME}-{STUDY}", toy_spec, exp)
  toy = toy.sel(seed=[SETTING["toy_seed"]])
  import dataclasses
  sae_spec = dataclasses.replace(sae_spec, dict_multiples=(SETTING["dict_multiple"],),
                                 l1s=(SETTING["l1"],), sae_seeds=(0,))
  return toy, sae_spec


def train_engine(toy: results.SweepResult, spec):
  """The whole grid in one call: `(SAEResult, wall seconds of the call)`."""
  from superpos_jax.sae import grid as sae_grid
  t0 = time.perf_counter()
  res = sae_grid.run(toy, spec, progress=False)
  return res, time.perf_counter() - t0


def engine_scores(res) -> dict[str, np.ndarray]:
  """`[A, D, R]` MCC over all features and over the embedded ones, and SAELens's
  other metrics over all features, from what the SAE program stores."""
  r = summary_sae.first_setting(res)
  A, D, S, K, L, R = r["eval_loss"].shape
  out = {k: np.full((A, D, R), np.nan) for k in ("mcc", "mcc embedded", "f1", "uniqueness",
                                                  "explained variance", "l0")}
  for a, d, s in np.ndindex(A, D, R):
    W = r.toy["toy_W"][a, d, 0]
    idx = (a, d, 0, 0, 0, s)
    got = sae_metrics.scores(r["decoder"][idx], W, np.ones(W.shape[1], bool),
                             r["coactivation"][idx], r["frequency"][idx],
                             r["feature_frequency"][idx], float(r["mse"][idx]),
                             float(r["hidden_variance"][idx]))
    for k in ("mcc", "f1", "uniqueness", "explained variance"):
      out[k][a, d, s] = got[k]
    out["mcc embedded"][a, d, s] = sae_metrics.mcc(W[:, summary_sae.embedded(W)],
                                                   r["decoder"][idx])
    out["l0"][a, d, s] = r["l0"][idx]
  return out


def _data(W: np.ndarray, density: float):
  """SAELens's feature dictionary (the columns of W as its rows) and a generator of the
  toy model's features (fire with probability `density`, then U[0, 1))."""
  import torch
  from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
  m, n = W.shape
  fd = FeatureDictionary(n, m, initializer=None)
  fd.feature_vectors.data = torch.tensor(W.T, dtype=torch.float32)
  gen = ActivationGenerator(n, firing_probabilities=density, mean_firing_magnitudes=1.0,
                            std_firing_magnitudes=0.0,
                            modify_activations=lambda acts: acts * torch.rand_like(acts))
  return fd, gen


def train_saelens(W: np.ndarray, density: float, spec, seed: int):
  """One standard ReLU SAE by SAELens's synthetic-data trainer: `(sae, seconds)`."""
  import torch
  from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
  from sae_lens.synthetic import train_toy_sae
  m, n = W.shape
  torch.manual_seed(seed)
  fd, gen = _data(W, density)
  t0 = time.perf_counter()
  sae = StandardTrainingSAE(StandardTrainingSAEConfig(
      d_in=m, d_sae=SETTING["dict_multiple"] * n, l1_coefficient=SETTING["l1"],
      decoder_init_norm=1.0))
  train_toy_sae(sae, fd, gen, training_samples=spec.steps * spec.batch_size,
                batch_size=spec.batch_size, lr=spec.lr)
  return sae, time.perf_counter() - t0


def saelens_scores(sae, W: np.ndarray, density: float, samples: int) -> dict[str, float]:
  """SAELens's `eval_sae_on_synthetic_data`, and `sae_metrics` on the same matrices."""
  from sae_lens.synthetic import eval_sae_on_synthetic_data
  fd, gen = _data(W, density)
  ev = eval_sae_on_synthetic_data(sae, fd, gen, num_samples=samples)
  D = sae.W_dec.detach().numpy().T  # [m, k]
  ours = sae_metrics.mcc(W, D)
  if abs(ours - ev.mcc) > 1e-5:  # the definitions are one (tests/test_sae_metrics.py)
    raise RuntimeError(f"sae_metrics.mcc {ours} != SAELens's {ev.mcc}")
  return {"mcc": ev.mcc, "mcc embedded": sae_metrics.mcc(W[:, summary_sae.embedded(W)], D),
          "f1": ev.classification.f1_score, "uniqueness": ev.uniqueness,
          "explained variance": ev.explained_variance, "l0": ev.sae_l0}


def run_saelens(toy, spec, samples: int, log):
  """Every toy model's SAE, one after another: `({metric: [A, D]}, seconds, threads)`."""
  import torch
  W = np.asarray(toy["W"]).reshape((len(toy.coords["activation"]), len(toy.coords["density"]))
                                   + toy["W"].shape[-2:])
  A, D = W.shape[:2]
  dens = toy.coords["density"]
  torch.set_num_threads(1)  # [256, m] tensors: a second thread only adds synchronisation
  out, seconds = {}, 0.0
  for a, d in np.ndindex(A, D):
    sae, s = train_saelens(W[a, d], float(dens[d]), spec, seed=0)
    seconds += s
    for k, v in saelens_scores(sae, W[a, d], float(dens[d]), samples).items():
      out.setdefault(k, np.full((A, D), np.nan))[a, d] = v
    log(f"  SAELens {toy.coords['activation'][a]} 1-S={dens[d]:g}: {s:.1f} s, "
        f"MCC {out['mcc'][a, d]:.3f}")
  return out, seconds, torch.get_num_threads()


def compare(engine: dict, noise: dict, saelens: dict, acts, dens) -> dict:
  """Side-by-side numbers: per activation and density, and the gaps against seed noise."""
  sparse = np.asarray(dens) < summary_sae.SPARSE_BELOW
  out = {"per activation and density": {}, "mean over sparse densities": {}}
  for k in saelens:
    out["per activation and density"][k] = {
        "engine": dict(zip(acts, engine[k][..., 0].tolist())),
        "saelens": dict(zip(acts, saelens[k].tolist()))}
    out["mean over sparse densities"][k] = {
        "engine": dict(zip(acts, np.mean(engine[k][:, sparse, 0], 1).tolist())),
        "saelens": dict(zip(acts, np.mean(saelens[k][:, sparse], 1).tolist()))}
  for k in ("mcc", "mcc embedded"):
    seeds = noise[k]  # [A, D, R]
    pairs = [np.abs(seeds[..., i] - seeds[..., j]) for i in range(seeds.shape[-1])
             for j in range(i + 1, seeds.shape[-1])]
    out[f"{k}: mean |engine - SAELens|"] = float(np.mean(np.abs(engine[k][..., 0] - saelens[k])))
    out[f"{k}: mean |engine seed - engine seed|"] = float(np.mean(pairs))
  return out


def main(argv=None) -> None:
  args = parse_args(argv)
  cli.configure_host("cpu", compile_cache=False)  # the engine's compile time is reported
  try:
    import sae_lens
  except ImportError as e:
    raise cli.UserError(f"{SAELENS_MISSING}: {e}") from None
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  preset = PRESETS[args.preset]
  toy, spec = toy_models(args)
  acts, dens = [str(a) for a in toy.coords["activation"]], toy.coords["density"].tolist()
  log(f"[{NAME}] engine: {len(acts) * len(dens)} SAEs in one call")
  res, engine_s = train_engine(toy, spec)
  import dataclasses
  noisy, _ = train_engine(toy, dataclasses.replace(spec, sae_seeds=preset["noise_seeds"]))
  log(f"[{NAME}] SAELens: the same SAEs one by one")
  saelens, saelens_s, threads = run_saelens(toy, spec, preset["eval_samples"], log)
  n_sae = len(acts) * len(dens)
  report = {
      "setting": dict(SETTING, study=STUDY, sae_spec=spec.to_dict(),
                      toy_spec=toy.spec.to_dict(), activations=acts, densities=dens),
      "versions": {"sae_lens": sae_lens.__version__, "torch": __import__("torch").__version__,
                   "superpos_jax environment": res.meta["env"]},
      "timings": {"saes": n_sae, "saelens_train_s": saelens_s, "saelens_torch_threads": threads,
                  "engine_call_s": engine_s, "engine_compile_s": res.meta["timings"]["compile_s"],
                  "engine_run_s": res.meta["timings"]["run_s"],
                  "ratio_call": saelens_s / engine_s,
                  "ratio_run": saelens_s / res.meta["timings"]["run_s"]},
      "machine": {"cores": os.cpu_count(), "load_average_1_5_15min": list(os.getloadavg()),
                  "shared": "other sessions' jobs ran on the same cores (see the load)"},
      **compare(engine_scores(res), engine_scores(noisy), saelens, acts, dens)}
  folder = args.figures or os.path.join(cli.REPO, "figures",
                                        *(() if args.preset == "full" else (args.preset,)))
  launch.prepare_folder(folder, "--figures")
  path = os.path.join(folder, f"{NAME}.json")
  results.write_atomically(path, lambda f: f.write(json.dumps(report, indent=1).encode()))
  t = report["timings"]
  print(f"{n_sae} SAEs: SAELens one by one {t['saelens_train_s']:.1f} s, the engine in one call "
        f"{t['engine_call_s']:.1f} s (compile {t['engine_compile_s']:.1f} s): "
        f"{t['ratio_call']:.1f}x; wrote {os.path.relpath(path)}")
  for k in ("mcc", "mcc embedded"):
    print(f"{k}: mean |engine - SAELens| {report[f'{k}: mean |engine - SAELens|']:.3f}, "
          f"engine seed to seed {report[f'{k}: mean |engine seed - engine seed|']:.3f}")


if __name__ == "__main__":
  sys.exit(cli.run(main))
