"""Every registered objective against a hand computation, and each method's characteristic property."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import scipy.special
import torch

from inference.adversarial import AdversarialELBO
from inference.free_bits import FreeBitsELBO, SentenceFreeBitsELBO
from inference.handlers import scale_latent
from inference.mmd import WassersteinMMDELBO, mmd_u_statistic
from inference.objectives import OBJECTIVES, get_objective
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.data import iterate_batches, make_batch
from pyro_textvae.io import load_checkpoint
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.posteriors import BatchNormGaussianHead

from .conftest import SMALL

VOCAB = 20
NUM_DATA = 30
DATA = {"synthetic": {"num_train": 32, "num_valid": 8, "num_test": 8, "seed": 1}}


def _batch():
    return make_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15], [16, 17, 18, 19], [6, 6, 9]])


def _setup(name: str, overrides: dict | None = None):
    """The objective's resolved params, loss and a dropout-free small model with its model options."""
    objective = get_objective(name)
    params = objective.resolve(overrides)
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


def test_fine_free_bits_pass_no_gradient_to_dimensions_below_target():
    loc = torch.tensor([[0.1, 2.0, 0.0], [-0.1, 3.0, 0.1], [0.2, 2.5, -0.1], [0.0, 1.5, 0.05]])
    loss = FreeBitsELBO(target_kl=3 * 0.5).differentiable_loss(_free_latent_model, _free_latent_guide, loc)
    loss.backward()
    grad = pyro.param("loc").grad
    assert torch.all(grad[:, [0, 2]] == 0) and torch.all(grad[:, 1] != 0)
    below = 2 * 4 * 0.5
    assert float(loss.detach()) == pytest.approx(below + float((0.5 * loc[:, 1].detach() ** 2).sum()), rel=1e-6)


def test_coarse_free_bits_pass_no_gradient_to_sentences_below_target():
    loc = torch.tensor([[0.1, 0.2, 0.0], [1.0, 2.0, 1.0], [0.3, 0.1, -0.1], [2.0, -1.0, 0.5]])
    loss = SentenceFreeBitsELBO(target_kl=1.0).differentiable_loss(_free_latent_model, _free_latent_guide, loc)
    loss.backward()
    grad = pyro.param("loc").grad
    assert torch.all(grad[[0, 2]] == 0) and torch.all(grad[[1, 3]].abs().sum(1) > 0)
    assert float(loss.detach()) == pytest.approx(2 * 1.0 + float((0.5 * loc[[1, 3]].detach() ** 2).sum()), rel=1e-6)


def test_vectorised_particles_keep_the_batch_penalty_per_particle():
    loc = torch.tensor([[0.1, 2.0, 0.0], [-0.1, 3.0, 0.1], [0.2, 2.5, -0.1], [0.0, 1.5, 0.05]])
    single = FreeBitsELBO(1.5).loss(_free_latent_model, _free_latent_guide, loc)
    vectorised = FreeBitsELBO(1.5, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    assert vectorised.loss(_free_latent_model, _free_latent_guide, loc) == pytest.approx(single, rel=1e-6)


def test_bn_expected_kl_is_at_least_d_gamma_squared_over_two():
    gamma = 1.2
    _, _, _, vae = _setup("bn", {"gamma": gamma})
    head = vae.posterior
    assert isinstance(head, BatchNormGaussianHead) and head.gamma == gamma
    d = vae.config.latent_dim
    with torch.no_grad():
        loc, scale = head.parameters_of(torch.randn(64, SMALL["hidden_dim"]))
    assert float(_gaussian_kl_per_dimension(loc, scale).sum(1).mean()) >= d * gamma**2 / 2
    batch = _batch()
    with torch.no_grad():
        hidden = vae.encoder(batch.tokens, batch.mask)
        raw_var = head.linear(hidden).chunk(2, -1)[0].var(0, unbiased=False)
        loc, scale = head.parameters_of(hidden)
    bound = float((gamma**2 * raw_var / (raw_var + head.norm.eps)).sum() / 2)
    assert float(_gaussian_kl_per_dimension(loc, scale).sum(1).mean()) >= bound


def test_delta_keeps_every_dimension_kl_above_delta_for_any_encoder_output():
    delta = 0.3
    _, _, _, vae = _setup("delta", {"delta": delta})
    assert vae.posterior.delta == delta
    for spread in (0.01, 1.0, 100.0):
        with torch.no_grad():
            loc, scale = vae.posterior.parameters_of(spread * torch.randn(500, SMALL["hidden_dim"]))
        assert float(_gaussian_kl_per_dimension(loc, scale).min()) >= delta - 1e-5


def test_vmf_kl_does_not_depend_on_the_mean_direction():
    _, _, _, vae = _setup("vmf", {"kappa": 20.0})
    q = vae.posterior(10 * torch.randn(50, SMALL["hidden_dim"]))
    d = vae.config.latent_dim
    assert q.mean.std(0).min() > 0.1
    kl = torch.distributions.kl_divergence(q, vae.prior(50))
    ratio = scipy.special.ive(d / 2, 20.0) / scipy.special.ive(d / 2 - 1, 20.0)
    expected = 20.0 * ratio + _log_vmf_normaliser(d, 20.0) + _log_sphere_area(d)
    assert torch.allclose(kl, torch.full((50,), expected, dtype=kl.dtype), rtol=1e-5)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    torch.manual_seed(1)
    x, y = torch.randn(400, 4), torch.randn(400, 4)
    same = float(mmd_u_statistic(x, y))
    shifted = [float(mmd_u_statistic(x, y + shift)) for shift in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.005
    assert 0.02 < shifted[0] < shifted[1] < shifted[2]


def test_cyclical_weights_follow_the_schedule(tmp_path):
    objective = get_objective("cyclical")
    params = objective.resolve({"cycle_epochs": "2", "warmup_epochs": "1"})
    schedule = objective.make_schedule(params, 5)
    assert [schedule(t) for t in range(23)] == [min(1.0, (t % 10) / 5) for t in range(23)]
    trainer = new_trainer(tmp_path / "run", DATA, SMALL, "cyclical", {"cycle_epochs": "1", "warmup_epochs": "0.5"},
                          TrainConfig(epochs=1, batch_size=16, progress=False))
    batch = next(iter(iterate_batches(trainer.train_split, 16, shuffle=False)))
    cycle, warmup = trainer.steps_per_epoch, max(1, round(0.5 * trainer.steps_per_epoch))
    for step in range(2 * cycle + 1):
        trainer.state["step"] = step
        trainer.step(batch.tokens, batch.mask)
        assert trainer.weight == min(1.0, (step % cycle) / warmup)


def test_aae_discriminator_steps_and_round_trips_through_state_dict():
    _, _, loss_fn, vae = _setup("aae")
    assert loss_fn.state_dict() == {}
    batch = _batch()
    loss_fn.loss_and_grads(vae.model, vae.guide, batch.tokens, batch.mask)
    before = {k: v.clone() for k, v in loss_fn.state_dict()["discriminator"].items()}
    loss_fn.loss_and_grads(vae.model, vae.guide, batch.tokens, batch.mask)
    state = loss_fn.state_dict()
    assert all(not torch.equal(before[k], v) for k, v in state["discriminator"].items())
    assert math.isfinite(loss_fn.last_terms["discriminator"])
    restored = get_objective("aae").make_loss(get_objective("aae").resolve())
    restored.load_state_dict(state)
    for key, value in state["discriminator"].items():
        assert torch.equal(restored.state_dict()["discriminator"][key], value)
    assert _loss(restored, vae, batch, 1.0, seed=2) == _loss(loss_fn, vae, batch, 1.0, seed=2)
    exp_avg = [s["exp_avg"] for s in restored.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(exp_avg, loss_fn.optimizer.state_dict()["state"].values()))
    with pytest.raises(ValueError, match="hidden_dim"):
        AdversarialELBO(hidden_dim=8).load_state_dict(state)


def test_a_loaded_aae_discriminator_is_rebuilt_on_the_device_of_the_latent():
    """A checkpoint loaded on the CPU must resume on a GPU: the discriminator and its Adam state
    follow the device of z (``meta`` stands in for a GPU here; no data is needed to check devices)."""
    _, _, loss_fn, vae = _setup("aae")
    batch = _batch()
    loss_fn.loss_and_grads(vae.model, vae.guide, batch.tokens, batch.mask)
    restored = get_objective("aae").make_loss(get_objective("aae").resolve())
    restored.load_state_dict(loss_fn.state_dict())
    discriminator = restored._discriminator_for(vae.config.latent_dim, torch.device("meta"))
    assert {p.device.type for p in discriminator.parameters()} == {"meta"}
    moments = [s[k] for s in restored.optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")]
    assert moments and {m.device.type for m in moments} == {"meta"}
    wider = AdversarialELBO()
    wider.load_state_dict(loss_fn.state_dict())
    d = vae.config.latent_dim
    with pytest.raises(ValueError, match=f"discriminator takes d = {d}, the site has d = {d + 1}"):
        wider._discriminator_for(d + 1, torch.device("cpu"))


def test_aae_resume_restores_the_discriminator_exactly(tmp_path):
    def trainer(name, epochs):
        config = TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", progress=False, seed=3)
        return new_trainer(tmp_path / name, DATA, SMALL, "aae", {}, config)

    trainer("straight", 2).fit()
    trainer("stopped", 1).fit()
    resume_trainer(tmp_path / "stopped", epochs=2).fit(resume=True)
    straight, resumed = (load_checkpoint(tmp_path / name / "last.pt") for name in ("straight", "stopped"))
    assert straight["loss_state"]["discriminator"]
    for part in ("model", "loss_state"):
        _assert_identical(straight[part], resumed[part])


def _assert_identical(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_identical(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_identical(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b


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
        get_objective("free-bits").resolve({"gamma": "0.5"})
    with pytest.raises(ValueError, match="lambda"):
        get_objective("wae-mmd").resolve({"lambda": "much"})
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


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_trains_a_step_end_to_end(tmp_path, name):
    trainer = new_trainer(tmp_path / name, DATA, SMALL, name, {},
                          TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False))
    trainer.state["step"] = 10**6
    batch = next(iter(iterate_batches(trainer.train_split, 16, shuffle=False)))
    before = {key: value.clone() for key, value in trainer.vae.named_parameters()}
    values = trainer.step(batch.tokens, batch.mask)
    assert math.isfinite(values["loss"]) and all(math.isfinite(v) for v in values.values())
    assert all(not torch.equal(before[key], value) for key, value in trainer.vae.named_parameters())
    assert (trainer.checkpoint_state()["loss_state"] != {}) == (name == "aae")
