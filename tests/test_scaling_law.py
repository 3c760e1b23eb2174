"""Liu, Liu & Gore's set-up as engine families (data, init, optimiser), the width-scaling
numbers, and `experiments/scaling_law.py`'s quick preset end to end."""

import glob
import importlib
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from superpos_jax import activations, data, families, results, summary_scaling, train, transforms
from superpos_jax.model import Params, init_params
from superpos_jax.spec import SpecError, SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("a", [0.0, 1.0, 1.7])
def test_power_law_frequencies_and_the_density_that_carries_a(a):
  d = data.exponent_density(a)
  assert 0 < d <= 1 and data.density_exponent(d) == pytest.approx(a)
  p = np.asarray(data.power_law_frequencies(50, jnp.float32(d)), np.float64)
  i = np.arange(1, 51)
  np.testing.assert_allclose(p, i ** -a / np.sum(i ** -a), rtol=2e-5)


def test_exponential_and_linear_frequencies():
  p = np.asarray(data.exponential_frequencies(40, jnp.float32(0.25)), np.float64)
  want = np.exp(-np.arange(40) / 10.0)
  np.testing.assert_allclose(p, want / want.sum(), rtol=2e-5)
  q = np.asarray(data.linear_frequencies(40, jnp.float32(0.3)), np.float64)
  np.testing.assert_allclose(q, (40 - np.arange(40)) / np.sum(40 - np.arange(40)), rtol=2e-5)


def test_power_law_features_are_bernoulli_times_uniform_on_0_2():
  """x_i = u_i v_i with u_i ~ Bernoulli(p_i), v_i ~ U(0, 2): presence rates and values."""
  n, B, a = 8, 200_000, 1.0
  u = jax.random.uniform(jax.random.key(3), (n, B))
  x = np.asarray(data.features("power_law", u, jnp.float32(data.exponent_density(a))))
  p = np.asarray(data.power_law_frequencies(n, jnp.float32(0.5)))
  present = x > 0
  assert np.all(np.abs(present.mean(axis=1) - p) <= 4 * np.sqrt(p / B) + 1e-4)
  values = x[present]
  assert values.max() < 2.0 and values.max() > 1.99
  assert values.mean() == pytest.approx(1.0, abs=0.01)  # U(0, 2)
  unit = np.asarray(data.features("power_law_unit", u, jnp.float32(0.5)))
  np.testing.assert_allclose(2.0 * unit, x, rtol=1e-6)  # the same draw at half the scale


def test_normal_bias_init_draws_b_and_scales_only_w():
  n, m = 4000, 16
  params = init_params(jax.random.key(0), n, m, init="normal", model="bottleneck_normal_bias", scale=2.0)
  assert np.std(np.asarray(params.b)) == pytest.approx(1.0, abs=0.05)
  assert np.std(np.asarray(params.W)) == pytest.approx(2.0 / math.sqrt(m), rel=0.05)


def _their_adamw(W, b, grads, lr, wd, steps, warmup):
  """Their exp/adamw.py (decay before Adam, eps in the row norm) and exp-10's get_lr, in
  NumPy; W [n, m] as theirs (features as rows)."""
  state = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in (("W", W), ("b", b))}
  out = []
  for t, (gW, gb) in enumerate(grads):
    s = t + 1
    rate = lr * s / warmup if s < warmup else (lr - 0.05 * lr) * 0.5 * (
        1 + math.cos(math.pi * (s - warmup) / (steps - warmup))) + 0.05 * lr
    if wd >= 0:
      W = W * (1 - wd * rate)
    else:
      norms = np.linalg.norm(W, axis=1, keepdims=True) + 1e-8
      W = W + rate * wd * W * (1 - 1 / norms)
    new = {}
    for k, p, g in (("W", W, gW), ("b", b, gb)):
      m1, m2 = state[k]
      m1[:] = 0.9 * m1 + 0.1 * g
      m2[:] = 0.999 * m2 + 0.001 * g * g
      denom = np.sqrt(m2) / math.sqrt(1 - 0.999 ** s) + 1e-8
      new[k] = p - rate / (1 - 0.9 ** s) * m1 / denom
    W, b = new["W"], new["b"]
    out.append((W.copy(), b.copy()))
  return out


@pytest.mark.parametrize("wd", [-1.0, 0.5])
def test_adamw_liu_equals_their_adamw_and_schedule(wd):
  """`transforms.liu_adamw` against a NumPy transcription of their optimiser: the
  signed row-norm decay on W only, Adam, warm-up then cosine to 5 %."""
  rng = np.random.default_rng(0)
  n, m, steps = 7, 3, 30
  W0, b0 = rng.standard_normal((n, m)), rng.standard_normal(n)
  grads = [(rng.standard_normal((n, m)) * 0.1, rng.standard_normal(n) * 0.1) for _ in range(steps)]
  want = _their_adamw(W0, b0, grads, 0.05, wd, steps, warmup=3)
  tx = transforms.liu_adamw(jnp.float32(0.05), jnp.float32(wd), steps=steps)
  params = Params(W=jnp.asarray(W0.T, jnp.float32), b=jnp.asarray(b0, jnp.float32))
  state = tx.init(params)
  update = jax.jit(tx.update)
  for (gW, gb), (wW, wb) in zip(grads, want):
    g = Params(W=jnp.asarray(gW.T, jnp.float32), b=jnp.asarray(gb, jnp.float32))
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params.W).T, wW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(params.b), wb, rtol=1e-4, atol=1e-5)


def test_schedule_ends_and_negative_decay_pulls_norms_to_one():
  f = transforms.warmup_cosine(20_000)
  assert float(f(0)) == pytest.approx(1 / 2000, rel=1e-4)  # float32
  assert float(f(1999)) == pytest.approx(1.0, rel=1e-6)
  assert float(f(19_999)) == pytest.approx(0.05, rel=1e-5)
  p = {"W": jnp.array([[3.0, 0.2], [0.0, 0.1]])}  # columns of norm 3 and ~0.22
  tx = transforms.add_signed_feature_decay(jnp.float32(-1.0))
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  moved = np.linalg.norm(np.asarray(p["W"] - 0.1 * u["W"]), axis=0)
  assert moved[0] < 3.0 and moved[1] > np.linalg.norm([0.2, 0.1])


def test_negative_weight_decay_only_for_a_signed_optimizer():
  with pytest.raises(SpecError, match="'adamw_liu'") as e:
    SweepSpec(n=10, m=5, weight_decays=(0.01, -0.5))
  assert "\n" not in str(e.value)
  spec = SweepSpec(n=10, m=5, weight_decays=(-1.0, 1.0), optimizer="adamw_liu")
  assert families.get("optimizer", spec.optimizer).signed_decay


def test_padding_the_width_with_zero_rows_is_exact():
  """A width-3 model and the same model padded to width 5 with zero rows train alike:
  the zero rows get zero gradients, Adam updates and decay, so they stay exactly zero and
  the live rows follow the unpadded model (to float rounding)."""
  n, steps, density = 12, 12, data.exponent_density(1.0)
  importance = jnp.full((n,), 1.0 / n)
  out = {}
  for m in (3, 5):
    spec = SweepSpec(n=n, m=m, activations=("relu",), steps=steps, batch_size=32, init="normal",
                     model="bottleneck_normal_bias", data="power_law", optimizer="adamw_liu",
                     weight_decays=(-1.0,), lrs=(1e-2,), densities=(density,))
    trainer = train.make_train(spec, activations.get("relu"))
    state = trainer.init(jax.random.key(0), 1.0, jnp.float32(1e-2), jnp.float32(-1.0))
    W = jax.random.normal(jax.random.key(1), (3, n)) / math.sqrt(3)
    state = state._replace(params=state.params._replace(W=jnp.zeros((m, n)).at[:3].set(W)))
    step = jax.jit(lambda st, u: trainer.step(st, u, jnp.float32(density), importance, 1e-2, -1.0))
    for t in range(steps):
      state, _ = step(state, jax.random.uniform(jax.random.fold_in(jax.random.key(2), t), (n, 32)))
    out[m] = np.asarray(state.params.W)
  assert np.all(out[5][3:] == 0.0)
  np.testing.assert_allclose(out[5][:3], out[3], rtol=1e-5, atol=1e-6)


def test_fit_exponents_and_t_interval():
  m = np.array([5.0, 8.0, 12.0, 19.0])
  loss = np.stack([2.0 * m ** -1.0, 0.3 * m ** -0.5])
  k, r2 = summary_scaling.fit_exponents(loss, m)
  np.testing.assert_allclose(k, [1.0, 0.5], atol=1e-12)
  np.testing.assert_allclose(r2, [1.0, 1.0], atol=1e-12)
  x = np.array([[0.9, 1.1, 1.0], [0.5, np.nan, 0.7]])
  mean, low, high = summary_scaling.t_interval(x)
  from scipy import stats
  want = stats.t.interval(0.95, 2, loc=1.0, scale=stats.sem([0.9, 1.1, 1.0]))
  np.testing.assert_allclose([low[0], high[0]], want, rtol=1e-9)
  assert mean[1] == pytest.approx(0.6) and low[1] < 0.6 < high[1]


def _scaling_law_module():
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  try:
    return importlib.import_module("scaling_law")
  finally:
    sys.path.pop(0)


def test_build_specs_one_spec_per_width_for_every_preset():
  """The agreed interface: `PRESETS` and `build_specs(preset)`, importable without running."""
  module = _scaling_law_module()
  assert set(module.PRESETS) >= {"quick", "paper", "full"}
  for preset, p in module.PRESETS.items():
    specs = module.build_specs(preset)
    assert len(specs) == len(p["parts"]) * len(p["widths"])
    assert [s.m for s in specs[:len(p["widths"])]] == list(p["widths"])
    assert all(s.optimizer == "adamw_liu" and s.model == "bottleneck_normal_bias" for s in specs)
  full = module.build_specs("full")[0]
  assert (full.n, full.steps, full.batch_size, len(full.weight_decays), len(full.densities)) == (
      1000, 20_000, 2048, 10, 17)


def _run_quick(tmp_path, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "scaling_law.py"), "--preset", "quick",
       "--quiet", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs"), *flags],
      capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "figs" / "scaling_law_summary.json") as f:
    return json.load(f)


def _pngs(tmp_path, *suffixes):
  for suffix in suffixes:
    assert (tmp_path / "figs" / f"scaling_law_{suffix}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_quick_preset_relu_part(tmp_path):
  """The quick preset's ReLU part end to end (one result per width, the summary with the
  comparison to Liu et al., the three ReLU figures)."""
  out = _run_quick(tmp_path, "--parts", "relu")
  paths = sorted(glob.glob(str(tmp_path / "runs" / "scaling_law-relu-*.npz")))
  assert len(paths) == 2 and {results.load(p).spec.m for p in paths} == {3, 6}
  relu = out["parts"]["relu"]
  assert list(out["parts"]) == ["relu"] and relu["widths"] == [3, 6]
  assert relu["data exponents a"] == [1.0, 2.0]
  ex = np.asarray(relu["exponent, typical seed (mean over seeds) [activation, a, weight decay]"], float)
  assert ex.shape == (1, 2, 2) and np.all(np.isfinite(ex))
  loss = np.asarray(relu["loss [activation, a, weight decay, seed, width]"], float)
  assert loss.shape == (1, 2, 2, 2, 2) and np.all(loss > 0)
  assert out["run"]["training s (compile + run, every spec)"] > 0
  assert "strong (weight decay -1)" in out["comparison with Liu et al."]
  _pngs(tmp_path, "relu_loss", "relu_exponents", "relu_represented")


def test_activation_figures_from_a_summary():
  """The activation figures draw from a summary alone (no training): two activations,
  one with a diverged seed (NaN), and the 8x-examples check."""
  from superpos_jax.plotting import scaling
  rng = np.random.default_rng(0)
  widths, A, D, S = np.array([4, 8, 16]), 2, 2, 3
  loss = 2.0 * widths ** -0.8 * np.exp(0.05 * rng.standard_normal((A, D, 2, S, 3)))
  loss[1, 0, 0, 2] = np.nan
  grid = summary_scaling.WidthGrid(["relu", "tanh"], np.array([1.0, 2.0]), np.array([-1.0, 1.0]),
                                   np.arange(S), widths, loss, np.full(loss.shape, 0.9),
                                   np.full(loss.shape, 0.2))
  part = summary_scaling.part_summary(grid, "", dict(n=20, steps=10, batch_size=8, lrs=(0.01,),
                                                     optimizer="adamw_liu", data="power_law_unit"))
  ex = summary_scaling.exponents_of(part)
  assert ex["typical"][0, 0, 0] == pytest.approx(0.8, abs=0.1) and np.isfinite(ex["typical"][1, 0, 0])
  longer = summary_scaling.part_summary(grid._replace(seeds=np.arange(1), loss=loss[:, :1, :1, :1],
                                                      represented=loss[:, :1, :1, :1],
                                                      dstar=loss[:, :1, :1, :1],
                                                      weight_decays=np.array([-1.0]),
                                                      exponents=np.array([1.0])),
                                        "", part["settings"])
  figs = scaling.figures({"parts": {"activations": part, "activations_longer": longer}})
  assert set(figs) == {"activations_exponents", "activations_loss", "activations_dstar"}
  assert len(figs["activations_exponents"].axes) == 2


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path):
  out = _run_quick(tmp_path)
  assert len(glob.glob(str(tmp_path / "runs" / "scaling_law-*.npz"))) == 4
  assert out["parts"]["activations"]["activations"] == ["relu", "sigmoid_stretched"]
  _pngs(tmp_path, "relu_loss", "relu_exponents", "relu_represented", "activations_exponents",
        "activations_loss", "activations_dstar")


def test_cli_optimizer_flag_and_negative_decay():
  """`--optimizer adamw_liu --weight-decays=-1,1` makes a spec; with the default AdamW the
  same decays fail in one line before anything trains."""
  from superpos_jax import cli
  parser = cli.experiment_parser("doc", {"paper": {}, "quick": {}})
  fields = dict(n=10, m=5, activations=("relu",))
  spec = cli.spec_from_args(parser.parse_args(["--optimizer", "adamw_liu", "--weight-decays=-1,1"]), fields)
  assert spec.optimizer == "adamw_liu" and spec.weight_decays == (-1.0, 1.0)
  args = parser.parse_args(["--weight-decays=-1,1"])
  assert cli.figures_dir(parser.parse_args(["--optimizer", "adamw_liu"])).endswith("paper-custom")
  with pytest.raises(SpecError, match="must be >= 0 for optimizer='adamw'"):
    cli.spec_from_args(args, fields)
