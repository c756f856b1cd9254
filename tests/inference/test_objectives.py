"""Every registered objective against a hand computation (loss = reconstruction + weighted penalty
on the same draws), masks and bad options (the helpers here are shared with
``test_objective_properties``)."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import scipy.special
import torch

from inference.free_bits import FreeBitsELBO
from inference.handlers import scale_latent
from inference.mmd import WassersteinMMDELBO
from inference.objectives import OBJECTIVES, get_objective
from pyro_textvae.data import make_batch
from pyro_textvae.model import TextVAE, TextVAEConfig
from tests.conftest import SMALL

VOCAB = 20
NUM_DATA = 30


def _batch():
    return make_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15], [16, 17, 18, 19], [6, 6, 9]])


def _setup(name: str, overrides: dict | None = None):
    """The objective's resolved params, loss and a dropout-free small model with its model options."""
    objective = get_objective(name)
    params = objective.configure(overrides)
    options = {**SMALL, "dropout_in": 0.0, "dropout_out": 0.0, **objective.model_options(params)}
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig.from_dict({**options, "vocab_size": VOCAB}))
    return objective, params, objective.make_loss(params), vae


def _weight(objective, params) -> float:
    """A positive weight from the objective's own schedule (10 steps an epoch)."""
    schedule = objective.make_schedule(params, 10)
    return next(w for w in (schedule(t) for t in (5, 50, 10**6)) if w > 0)


def _loss(loss_fn, vae, batch, weight: float, seed: int) -> float:
    torch.manual_seed(seed)
    model, guide = scale_latent(vae.model, weight), scale_latent(vae.guide, weight)
    return loss_fn.loss(model, guide, batch.tokens, batch.mask, num_data=NUM_DATA)


def _redraw_z(vae, batch, seed: int):
    """The encoder's q(z|x) and the guide's sample, drawn again from the same seed."""
    torch.manual_seed(seed)
    q = vae.posterior_distribution(batch.tokens, batch.mask)
    return q, q.rsample()


def _reconstruction(vae, batch, z) -> torch.Tensor:
    """-sum_t m_t log softmax(logits_t)[w_t] per sentence (+ the bag-of-words term for bow)."""
    targets, mask = batch.tokens[:, 1:], batch.mask[:, 1:].float()
    log_probs = torch.log_softmax(vae.decoder(batch.tokens, z), -1)
    nll = -(log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    if vae.bag_of_words is not None:
        layer = vae.bag_of_words.output
        bow = torch.log_softmax(z @ layer.weight.T + layer.bias, -1)
        nll = nll - torch.stack([(bow[i, targets[i]] * mask[i]).sum() for i in range(len(z))])
    return nll


def _normal_log_density(z, loc, scale) -> torch.Tensor:
    return (-0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _log_vmf_normaliser(d: int, kappa: float) -> float:
    order = d / 2 - 1
    log_bessel = math.log(scipy.special.ive(order, kappa)) + kappa
    return order * math.log(kappa) - d / 2 * math.log(2 * math.pi) - log_bessel


def _log_sphere_area(d: int) -> float:
    return math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)


def _gaussian_kl_per_dimension(loc, scale) -> torch.Tensor:
    return 0.5 * (loc**2 + scale**2 - 1 - 2 * torch.log(scale))


def _head_outputs(vae, batch):
    with torch.no_grad():
        hidden = vae.encoder(batch.tokens, batch.mask)
        if vae.config.latent == "vmf":
            return torch.nn.functional.normalize(vae.posterior.linear(hidden), dim=-1), vae.config.kappa
        return vae.posterior.parameters_of(hidden)


@pytest.mark.parametrize("name", ["elbo", "beta", "cyclical", "bn", "delta", "skip", "bow", "vmf", "ae"])
def test_elbo_objectives_equal_reconstruction_plus_weighted_log_ratio(name):
    objective, params, loss_fn, vae = _setup(name)
    batch = _batch()
    weight = _weight(objective, params) if name != "ae" else 0.0
    loss = _loss(loss_fn, vae, batch, weight, seed=3)
    q, z = _redraw_z(vae, batch, seed=3)
    with torch.no_grad():
        reconstruction = _reconstruction(vae, batch, z)
        d = vae.config.latent_dim
        if name == "vmf":
            loc, kappa = _head_outputs(vae, batch)
            log_ratio = _log_vmf_normaliser(d, kappa) + kappa * (loc * z).sum(-1) + _log_sphere_area(d)
        else:
            loc, scale = _head_outputs(vae, batch)
            log_ratio = _normal_log_density(z, loc, scale) - _normal_log_density(z, 0 * z, torch.ones_like(z))
    expected = NUM_DATA / len(z) * (reconstruction.sum() + weight * log_ratio.sum())
    assert loss == pytest.approx(float(expected), rel=1e-5)
    if name == "ae":
        torch.manual_seed(3)
        surrogate = loss_fn.differentiable_loss(scale_latent(vae.model, 0.0), scale_latent(vae.guide, 0.0),
                                               batch.tokens, batch.mask)
        assert loss_fn.last_terms["kl"] == 0.0
        assert float(surrogate.detach()) == pytest.approx(float(reconstruction.sum()), rel=1e-6)


@pytest.mark.parametrize("name", ["free-bits", "free-bits-sentence"])
def test_free_bits_equal_the_clamped_analytic_kl(name):
    objective, params, _, vae = _setup(name)
    batch = _batch()
    loc, scale = _head_outputs(vae, batch)
    kl = _gaussian_kl_per_dimension(loc, scale)
    d = kl.shape[1]
    target = float(d * kl.mean(0).median()) if name == "free-bits" else float(kl.sum(1).median())
    objective, params, loss_fn, vae = _setup(name, {"target_kl": target})
    weight = _weight(objective, params)
    loss = _loss(loss_fn, vae, batch, weight, seed=4)
    _, z = _redraw_z(vae, batch, seed=4)
    if name == "free-bits":
        counted = [max(target / d, float(kl[:, k].mean())) for k in range(d)]
        assert any(c == target / d for c in counted) and any(c > target / d for c in counted)
        penalty = len(z) * sum(counted)
    else:
        penalty = sum(max(target, float(kl[i].sum())) for i in range(len(z)))
    with torch.no_grad():
        reconstruction = float(_reconstruction(vae, batch, z).sum())
    assert loss == pytest.approx(NUM_DATA / len(z) * (reconstruction + weight * penalty), rel=1e-5)


def test_wae_mmd_equals_the_u_statistic_written_out():
    objective, params, loss_fn, vae = _setup("wae-mmd", {"lambda": 3.0})
    batch = _batch()
    weight = 0.5
    loss = _loss(loss_fn, vae, batch, weight, seed=5)
    _, z = _redraw_z(vae, batch, seed=5)
    n, d = z.shape
    y = dist.Normal(torch.zeros(n, d), torch.ones(n, d)).sample()

    def k(a, b):
        return 2 * d / (2 * d + float(((a - b) ** 2).sum().detach()))

    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    mmd = (sum(k(z[i], z[j]) + k(y[i], y[j]) for i, j in pairs) / (n * (n - 1))
           - 2 * sum(k(z[i], y[j]) for i in range(n) for j in range(n)) / n**2)
    with torch.no_grad():
        reconstruction = float(_reconstruction(vae, batch, z).sum())
    assert loss == pytest.approx(NUM_DATA / n * (reconstruction + weight * 3.0 * n * mmd), rel=1e-5)


def test_aae_equals_the_generator_loss_of_its_discriminator():
    objective, params, loss_fn, vae = _setup("aae", {"weight": 2.0})
    batch = _batch()
    _loss(loss_fn, vae, batch, 1.0, seed=0)
    loss = _loss(loss_fn, vae, batch, 0.7, seed=6)
    _, z = _redraw_z(vae, batch, seed=6)
    first, second, last = (loss_fn.discriminator.layers[i] for i in (0, 2, 4))
    with torch.no_grad():
        hidden = torch.relu(torch.relu(z @ first.weight.T + first.bias) @ second.weight.T + second.bias)
        logits = (hidden @ last.weight.T + last.bias).squeeze(-1)
        generator = float(torch.log1p(torch.exp(-logits)).sum())
        reconstruction = float(_reconstruction(vae, batch, z).sum())
    assert loss == pytest.approx(NUM_DATA / len(z) * (reconstruction + 0.7 * 2.0 * generator), rel=1e-5)


@pytest.mark.parametrize("name", ["dg", "dg-vmf"])
def test_density_gap_objectives_equal_the_estimator_written_out(name):
    objective, params, loss_fn, vae = _setup(name, {"num_samples": 3})
    batch = _batch()
    weight = _weight(objective, params)
    loss = _loss(loss_fn, vae, batch, weight, seed=7)
    q, z = _redraw_z(vae, batch, seed=7)
    samples = q.rsample((3,))
    n, d = z.shape
    with torch.no_grad():
        if name == "dg":
            loc, scale = _head_outputs(vae, batch)
            per_dim = -0.5 * ((samples[:, :, None] - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
            log_aggregate = torch.logsumexp(per_dim, dim=2) - math.log(n)
            log_prior = -0.5 * samples**2 - 0.5 * math.log(2 * math.pi)
            kl = float((log_aggregate - log_prior).sum(-1).mean())
        else:
            loc, kappa = _head_outputs(vae, batch)
            log_q = _log_vmf_normaliser(d, kappa) + kappa * torch.einsum("mik,jk->mij", samples, loc)
            log_aggregate = torch.logsumexp(log_q, dim=2) - math.log(n)
            kl = float((log_aggregate + _log_sphere_area(d)).mean())
        reconstruction = float(_reconstruction(vae, batch, z).sum())
    assert loss == pytest.approx(NUM_DATA / n * (reconstruction + weight * n * kl), rel=1e-5)


def _free_latent_model(data):
    with pyro.plate("data", 4):
        pyro.sample("z", dist.Normal(torch.zeros(4, 3), 1.0).to_event(1))


def _free_latent_guide(data):
    loc = pyro.param("loc", data)
    with pyro.plate("data", 4):
        pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))


def test_masked_latent_site_drops_the_penalty():
    _, _, loss_fn, vae = _setup("wae-mmd")
    batch = _batch()
    loss = _loss(loss_fn, vae, batch, 0.0, seed=8)
    _, z = _redraw_z(vae, batch, seed=8)
    with torch.no_grad():
        assert loss == pytest.approx(NUM_DATA / len(z) * float(_reconstruction(vae, batch, z).sum()), rel=1e-6)
    assert loss_fn.last_terms["mmd"] == 0.0


def test_bad_names_parameters_and_sites_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid: " + ", ".join(OBJECTIVES)):
        get_objective("vqvae")
    with pytest.raises(ValueError, match="valid: target_kl, warmup_epochs"):
        get_objective("free-bits").configure({"gamma": 0.5})
    with pytest.raises(ValueError, match="lambda"):
        get_objective("wae-mmd").configure({"lambda": "much"})
    with pytest.raises(ValueError, match="target_kl"):
        FreeBitsELBO(target_kl=-1.0)
    with pytest.raises(ValueError, match="latent sites"):
        WassersteinMMDELBO(sites=["w"]).loss(_free_latent_model, _free_latent_guide, torch.zeros(4, 3))
    _, _, _, vmf_vae = _setup("vmf")
    with pytest.raises(ValueError, match="free-bits-sentence"):
        FreeBitsELBO().loss(vmf_vae.model, vmf_vae.guide, _batch().tokens, _batch().mask)


def test_registry_names_are_the_papers_baselines():
    assert list(OBJECTIVES) == ["elbo", "beta", "cyclical", "free-bits", "free-bits-sentence", "bn", "delta", "vmf",
                                "aae", "wae-mmd", "skip", "bow", "ae", "dg", "dg-vmf"]
