"""Each method's characteristic property (free-bits gradients, BN and delta KL floors, the vMF KL,
the MMD), the cyclical schedule, the AAE discriminator's state and resume, and one training step
of every registered objective."""
from __future__ import annotations

import math

import pyro
import pytest
import scipy.special
import torch

from inference.adversarial import AdversarialELBO
from inference.free_bits import FreeBitsELBO, SentenceFreeBitsELBO
from inference.mmd import mmd_u_statistic
from inference.objectives import OBJECTIVES, get_objective
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.data import iterate_batches
from pyro_textvae.io import load_checkpoint
from pyro_textvae.posteriors import BatchNormGaussianHead
from tests.conftest import SMALL
from tests.inference.test_objectives import (
    _batch,
    _free_latent_guide,
    _free_latent_model,
    _gaussian_kl_per_dimension,
    _log_sphere_area,
    _log_vmf_normaliser,
    _loss,
    _setup,
)

DATA = {"synthetic": {"num_train": 32, "num_valid": 8, "num_test": 8, "seed": 1}}


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
    params = objective.configure({"cycle_epochs": 2, "warmup_epochs": 1})
    schedule = objective.make_schedule(params, 5)
    assert [schedule(t) for t in range(23)] == [min(1.0, (t % 10) / 5) for t in range(23)]
    trainer = new_trainer(tmp_path / "run", DATA, SMALL, "cyclical", {"cycle_epochs": 1, "warmup_epochs": 0.5},
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
    restored = get_objective("aae").make_loss()
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
    restored = get_objective("aae").make_loss()
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
