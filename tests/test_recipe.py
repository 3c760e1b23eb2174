"""The training recipe pinned: the engine's AdamW step against an independent NumPy
PyTorch-AdamW with a hand-derived gradient, and the paper presets' settings."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import activations, train
from superpos_jax.model import Params
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, M, B = 5, 2, 64
# float32 against float64: measured 3e-7 at most (a gradient entry of ~1e-5 makes Adam's
# m/√v sensitive), while the wrong recipes below move W or b by 7e-4 or more.
ATOL = 1e-6


def relu_loss_and_grads(W, b, x, importance):
  """Loss `mean_b Σ_i I_i (x_i − relu(WᵀW x + b)_i)²` and its gradient, by hand.

  With `H = W X`, `Z = WᵀH + b`, `Y = relu(Z)` and `G = ∂L/∂Z = −(2/B) I (X − Y) 1[Z > 0]`
  (examples as columns): `∂L/∂b = Σ_b G` and, since W appears in the encoder and the
  decoder, `∂L/∂W = H Gᵀ + W G Xᵀ`.
  """
  H = W @ x
  Z = W.T @ H + b[:, None]
  err = x - np.maximum(Z, 0.0)
  loss = np.sum(importance[:, None] * err**2) / x.shape[1]
  G = -2.0 / x.shape[1] * importance[:, None] * err * (Z > 0)
  return loss, H @ G.T + W @ G @ x.T, G.sum(axis=1)


def torch_adamw(params, grads, moments, t, lr, wd, b1=0.9, b2=0.999, eps=1e-8,
                decay=(True, True), l2=False):
  """One step of `torch.optim.AdamW` (step count `t` from 1): the decoupled decay
  `p -= lr·wd·p` first, then Adam with bias correction. `decay` says which parameters
  decay (PyTorch decays every parameter it is given); `l2=True` is the wrong recipe
  `torch.optim.Adam(weight_decay=wd)`, the decay folded into the gradient."""
  new_params, new_moments = [], []
  for p, g, (m, v), decays in zip(params, grads, moments, decay):
    if decays and l2:
      g = g + wd * p
    elif decays:
      p = p - lr * wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    new_params.append(p - lr * m_hat / (np.sqrt(v_hat) + eps))
    new_moments.append((m, v))
  return new_params, new_moments


def reference_run(W, b, xs, importance, lr, wd, **adamw_kw):
  """NumPy float64 training of `len(xs)` steps; returns (W, b, losses)."""
  params, losses = [W, b], []
  moments = [(np.zeros_like(W), np.zeros_like(W)), (np.zeros_like(b), np.zeros_like(b))]
  for t, x in enumerate(xs, start=1):
    loss, gW, gb = relu_loss_and_grads(*params, x, importance)
    params, moments = torch_adamw(params, [gW, gb], moments, t, lr, wd, **adamw_kw)
    losses.append(loss)
  return params[0], params[1], np.array(losses)


def fixed_inputs(steps, density):
  """Fixed W, b (non-zero, so both sides of the ReLU and the bias decay show), uniforms
  and importance, and the features `thin(u, density)` computed here."""
  rng = np.random.default_rng(7)
  W = rng.normal(0.0, 0.6, (M, N)).astype(np.float32)
  b = rng.normal(0.0, 0.2, N).astype(np.float32)
  us = rng.uniform(size=(steps, N, B)).astype(np.float32)
  importance = (0.7 ** np.arange(N)).astype(np.float32)
  xs = [np.where(u < density, u / np.float32(density), 0.0).astype(np.float64) for u in us]
  return W, b, us, importance, xs


def engine_run(W, b, us, importance, density, lr, wd):
  spec = SweepSpec(n=N, m=M, activations=("relu",), batch_size=B, steps=len(us))
  trainer = train.make_train(spec, activations.get("relu"))
  # A fresh AdamW state of this lr and decay; W and b replaced below.
  state = trainer.init(jax.random.key(0), 1.0, jnp.float32(lr), jnp.float32(wd))
  state = state._replace(params=Params(jnp.asarray(W), jnp.asarray(b)))
  step = jax.jit(trainer.step)
  losses = []
  for u in us:
    state, loss = step(state, jnp.asarray(u), jnp.float32(density), jnp.asarray(importance),
                       jnp.float32(lr), jnp.float32(wd))
    losses.append(float(loss))
  return np.asarray(state.params.W), np.asarray(state.params.b), np.array(losses)


# The paper's lr and decay; then a large decay and a sparse batch, where the variants of
# the decay differ by far more than the tolerance (next test).
@pytest.mark.parametrize("lr, wd, density", [(1e-3, 0.01, 1.0), (1e-2, 0.5, 0.6)])
def test_adamw_steps_match_numpy_pytorch_adamw(lr, wd, density):
  """Four jitted engine steps equal four steps of the NumPy reference, W and b alike."""
  W0, b0, us, importance, xs = fixed_inputs(4, density)
  W, b, losses = engine_run(W0, b0, us, importance, density, lr, wd)
  W_ref, b_ref, losses_ref = reference_run(W0.astype(np.float64), b0.astype(np.float64),
                                           xs, importance.astype(np.float64), lr, wd)
  np.testing.assert_allclose(losses, losses_ref, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=ATOL)
  np.testing.assert_allclose(b, b_ref, rtol=1e-5, atol=ATOL)
  assert np.abs(W - W0).max() > 3 * lr  # the steps really moved the weights


@pytest.mark.parametrize("variant", [dict(decay=(True, False)), dict(l2=True)])
def test_engine_differs_from_wrong_recipes(variant):
  """The tolerance above catches a decay missing on b, or Adam + L2 in place of AdamW:
  the engine is far from both (so the comparison cannot pass vacuously)."""
  lr, wd, density = 1e-2, 0.5, 0.6
  W0, b0, us, importance, xs = fixed_inputs(4, density)
  W, b, _ = engine_run(W0, b0, us, importance, density, lr, wd)
  W_bad, b_bad, _ = reference_run(W0.astype(np.float64), b0.astype(np.float64), xs,
                                  importance.astype(np.float64), lr, wd, **variant)
  assert max(np.abs(W - W_bad).max(), np.abs(b - b_bad).max()) > 100 * ATOL


def test_hand_gradient_matches_a_finite_difference():
  """The reference's hand-derived gradient is right (central differences in float64)."""
  W, b, _, importance, xs = fixed_inputs(1, 0.6)
  W, b, importance, x = (a.astype(np.float64) for a in (W, b, importance, xs[0]))
  _, gW, gb = relu_loss_and_grads(W, b, x, importance)
  h = 1e-6
  for (i, j) in [(0, 0), (1, 3), (0, 4)]:
    dW = np.zeros_like(W)
    dW[i, j] = h
    fd = (relu_loss_and_grads(W + dW, b, x, importance)[0]
          - relu_loss_and_grads(W - dW, b, x, importance)[0]) / (2 * h)
    np.testing.assert_allclose(gW[i, j], fd, rtol=1e-5, atol=1e-8)
  for i in range(N):
    db = np.zeros_like(b)
    db[i] = h
    fd = (relu_loss_and_grads(W, b + db, x, importance)[0]
          - relu_loss_and_grads(W, b - db, x, importance)[0]) / (2 * h)
    np.testing.assert_allclose(gb[i], fd, rtol=1e-5, atol=1e-8)


def load_experiment(name):
  path = os.path.join(REPO, "experiments", f"{name}.py")
  module_spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


# The study trains 10,000 steps; the phase diagram trains ten seeds for 5,000 (the README
# shows its summary at 10,000 steps too).
PAPER_STEPS = {"feature_matrices": 10_000, "phase_diagram": 5_000, "dims_per_feature": 10_000}


@pytest.mark.parametrize("name", sorted(PAPER_STEPS))
def test_paper_presets_use_the_study_recipe(name):
  """The paper preset, as its script builds it with no flags: AdamW lr 1e-3 and weight
  decay 0.01, batch 1024, the steps above, per-model Xavier normal init drawn
  independently for every grid point."""
  module = load_experiment(name)
  assert module.PARSER.get_default("preset") == "paper"
  spec = module.build_spec(module.PARSER.parse_args([]))
  assert spec.lrs == (1e-3,)
  assert spec.weight_decays == (0.01,)
  assert spec.batch_size == 1024
  assert spec.steps == PAPER_STEPS[name]
  assert spec.init == "xavier_normal" and spec.init_rng == "per_point"
