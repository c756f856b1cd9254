"""Per-term gradient norms against hand-computed gradients, and the clip norm ClippedOptim records."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from inference.density_gap_elbo import DensityGapELBO
from inference.elbo import LoggedTrace_ELBO
from inference.gradient_norms import term_gradient_norms
from inference.optim import ClippedOptim

X = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
TINY = 1e-6  # float64: the guide's own log-density gradients cancel to ~1e-10


def _setup():
    decoder_w = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
    loc = torch.nn.Parameter(torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64))

    def model(x):
        pyro.param("w", decoder_w)
        with pyro.plate("data", 3):
            z = pyro.sample("z", dist.Normal(torch.zeros(3, 1, dtype=torch.float64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(pyro.param("w") * z[:, 0], 1.0), obs=x)

    def guide(x):
        pyro.param("loc", loc)
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(pyro.param("loc").unsqueeze(-1), TINY).to_event(1))

    return model, guide, decoder_w, loc


@pytest.mark.parametrize("elbo", [Trace_ELBO, LoggedTrace_ELBO])
def test_norms_of_each_term_match_the_hand_computed_gradients(elbo):
    """With a near-deterministic guide z = loc: R = sum (x - w loc)^2 / 2, L = sum loc^2 / 2 + const.
    A fresh LoggedTrace_ELBO (no loss evaluated yet) works too."""
    pyro.clear_param_store()
    model, guide, w, loc = _setup()
    norms = term_gradient_norms(elbo(), model, guide, {"decoder": [w], "encoder": [loc]}, X, clip_norm=1.0)
    residual = (X - w * loc).detach()
    d_rec_w = -(residual * loc.detach()).sum()
    d_rec_loc = -(residual * w.detach())
    assert norms["reconstruction/decoder"] == pytest.approx(abs(float(d_rec_w)), rel=1e-4)
    assert norms["reconstruction/encoder"] == pytest.approx(float(d_rec_loc.norm()), rel=1e-4)
    assert norms["latent/decoder"] == 0.0
    assert norms["latent/encoder"] == pytest.approx(float(loc.detach().norm()), rel=1e-4)
    total_loc = (d_rec_loc + loc.detach()).norm()
    assert norms["total/encoder"] == pytest.approx(float(total_loc), rel=1e-4)
    total = math.hypot(float(d_rec_w), float(total_loc))
    assert norms["total/all"] == pytest.approx(total, rel=1e-4)
    assert norms["clip_factor"] == pytest.approx(1.0 / total, rel=1e-4)
    expected = float((residual**2).sum() / 2 + 3 * math.log(2 * math.pi) / 2)
    assert norms["reconstruction_loss"] == pytest.approx(expected, rel=1e-4)
    assert w.grad is None and loc.grad is None, "a diagnostic writes no .grad"


def test_density_gap_term_has_no_decoder_gradient_and_the_terms_add_up():
    pyro.clear_param_store()
    model, guide, w, loc = _setup()
    groups = {"decoder": [w], "encoder": [loc]}
    pyro.set_rng_seed(0)
    norms = term_gradient_norms(DensityGapELBO(num_samples=4), model, guide, groups, X)
    assert norms["latent/decoder"] == 0.0
    assert norms["latent/encoder"] > 0.0
    assert norms["total/decoder"] == pytest.approx(norms["reconstruction/decoder"], rel=1e-6)
    assert "clip_factor" not in norms


def test_clipped_optim_records_the_norm_before_clipping():
    pyro.clear_param_store()
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    pyro.param("a", a)
    pyro.param("b", b)
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])
    optim = ClippedOptim("sgd", lr=1.0, clip_norm=6.5)
    assert math.isnan(optim.last_norm)
    optim([pyro.param("a").unconstrained(), pyro.param("b").unconstrained()])
    assert optim.last_norm == pytest.approx(13.0)
