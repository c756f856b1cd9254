"""The density gap against the data set's aggregate q_D: stratified weights and a memory of posteriors,
against exact enumerations, quadrature and the full-data estimate; the memory saved for exact resume."""
from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch

import inference.density_gap as density_gap_module
from inference.density_gap import density_gap_kl, mixture_log_weights
from inference.density_gap_elbo import DensityGapELBO
from inference.posterior_memory import PosteriorMemory
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.distributions import HypersphericalUniform, VonMisesFisher
from pyro_textvae.io import load_checkpoint
from tests.conftest import SMALL
from tests.inference.crashing import crash_at_step
from tests.inference.test_density_gap import DOUBLE, mixture_kl_quad, normal_posterior, standard_prior

MEANS = [-2.0, -1.2, -0.3, 0.4, 1.1, 2.2, 0.0, 1.6]
SDS = [0.3, 0.5, 0.4, 0.6, 0.35, 0.5, 0.45, 0.3]


def _components(index) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.as_tensor(index)
    means, sds = torch.tensor(MEANS, dtype=DOUBLE), torch.tensor(SDS, dtype=DOUBLE)
    return means[index].unsqueeze(-1), sds[index].unsqueeze(-1)


def test_the_stratified_density_is_unbiased_over_every_batch_holding_the_sample():
    """For z drawn from q(z|x_i) and a batch of b holding i and b - 1 of the other N - 1 data, the
    stratified mixture's density averaged over all such batches is q_D(z), to rounding."""
    num_data, batch, own = len(MEANS), 3, 2
    z = torch.tensor(0.37, dtype=DOUBLE)
    log_q = torch.distributions.Normal(*[t.squeeze(-1) for t in _components(range(num_data))]).log_prob(z)
    exact = torch.logsumexp(log_q, 0).exp() / num_data
    others = [j for j in range(num_data) if j != own]
    densities = []
    for chosen in itertools.combinations(others, batch - 1):
        members = torch.tensor([own, *chosen])
        log_w = mixture_log_weights(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                                    torch.zeros(batch, dtype=torch.long), torch.tensor([batch], dtype=DOUBLE),
                                    num_data)
        densities.append(torch.logsumexp(log_q[members] + log_w[0], 0).exp())
    assert torch.stack(densities).mean().item() == pytest.approx(exact.item(), rel=1e-12)


def _expected_over_batches(batch: int, **options) -> float:
    """The estimate averaged over every batch of ``batch`` of the N data (200 replicates of 50 draws each)."""
    estimates = []
    for members in itertools.combinations(range(len(MEANS)), batch):
        loc, scale = _components(list(members))
        posterior = normal_posterior(loc.expand(200, -1, -1), scale.expand(200, -1, -1))
        torch.manual_seed(0)
        estimates.append(density_gap_kl(posterior, standard_prior(1), 50, **options).mean())
    return torch.stack(estimates).mean().item()


def test_stratified_and_batch_estimates_bracket_the_exact_kl_of_the_data_aggregate():
    """E_B KL(q_B || p) >= KL(q_D || p) (convexity) and E log q_D^ <= log q_D (Jensen): over every batch of
    4 of 8 one-dimensional posteriors the batch estimate lies above the quadrature value and the stratified
    one below, and closer; with the batch the whole data set both are the full-data estimate."""
    exact = mixture_kl_quad(MEANS, SDS)
    stratified = _expected_over_batches(4, weights="stratified", num_data=len(MEANS))
    batch = _expected_over_batches(4)
    assert stratified < exact < batch and exact - stratified < batch - exact
    whole = _expected_over_batches(len(MEANS), weights="stratified", num_data=len(MEANS))
    assert whole == pytest.approx(_expected_over_batches(len(MEANS)), rel=1e-12)
    assert whole == pytest.approx(exact, abs=0.02)


@pytest.mark.parametrize("mode", ["marginal", "joint"])
def test_a_memory_of_the_other_posteriors_gives_the_full_data_estimate(mode):
    """With the N - b posteriors outside the batch in a memory of K = N - b, the estimate equals
    density_gap_kl against all N posteriors, on the same draws."""
    torch.manual_seed(1)
    loc, scale = torch.randn(10, 3, dtype=DOUBLE), 0.3 + torch.rand(10, 3, dtype=DOUBLE)
    memory = PosteriorMemory(6)
    memory.push(normal_posterior(loc[4:], scale[4:]))
    batch = normal_posterior(loc[:4], scale[:4])
    extended, shared = memory.extend(batch)
    torch.manual_seed(2)
    with_memory = density_gap_kl(batch, standard_prior(3), 16, mode=mode, aggregate=extended, shared=shared)
    torch.manual_seed(2)
    full = density_gap_kl(batch, standard_prior(3), 16, mode=mode, aggregate=normal_posterior(loc, scale))
    assert shared == 6 and with_memory.item() == pytest.approx(full.item(), rel=1e-12)


def test_the_memory_keeps_the_last_k_posteriors_and_restores_exactly():
    memory = PosteriorMemory(5)
    loc = torch.arange(14, dtype=DOUBLE).view(7, 2)
    memory.push(normal_posterior(loc[:3], torch.ones(3, 2, dtype=DOUBLE)))
    memory.push(normal_posterior(loc[3:7].expand(2, -1, -1), torch.ones(2, 4, 2, dtype=DOUBLE)))
    kept = sorted(memory.buffers["loc"][:, 0].tolist())
    assert memory.count == 5 and kept == [4.0, 6.0, 8.0, 10.0, 12.0]
    restored = PosteriorMemory(5)
    restored.load_state_dict(memory.state_dict())
    assert torch.equal(restored.buffers["loc"], memory.buffers["loc"]) and restored.position == memory.position
    with pytest.raises(ValueError, match="does not fit a memory of 4 posteriors"):
        PosteriorMemory(4).load_state_dict(memory.state_dict())


def test_a_vmf_memory_extends_the_aggregate_with_its_directions():
    torch.manual_seed(3)
    directions = torch.nn.functional.normalize(torch.randn(9, 3, dtype=DOUBLE), dim=-1)
    kappa = torch.full((9,), 5.0, dtype=DOUBLE)
    memory = PosteriorMemory(5)
    memory.push(VonMisesFisher(directions[4:], kappa[4:]))
    batch = VonMisesFisher(directions[:4], kappa[:4])
    extended, shared = memory.extend(batch)
    prior = HypersphericalUniform(3, dtype=DOUBLE)
    torch.manual_seed(4)
    with_memory = density_gap_kl(batch, prior, 8, mode="joint", aggregate=extended, shared=shared)
    torch.manual_seed(4)
    full = density_gap_kl(batch, prior, 8, mode="joint", aggregate=VonMisesFisher(directions, kappa))
    assert with_memory.item() == pytest.approx(full.item(), rel=1e-12)


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize(("mode", "agg_size"), [("marginal", None), ("joint", 3), ("marginal", 4)])
def test_stratified_memory_chunks_and_gradients(mode, agg_size, generic, monkeypatch):
    """Chunked equals unchunked, and autograd (analytic backward or generic) matches finite differences,
    with stratified weights and with shared (memory) components."""
    if generic:
        monkeypatch.setattr(density_gap_module, "_gaussian_parts", lambda aggregate: None)
    torch.manual_seed(5)
    loc = torch.randn(6, 2, dtype=DOUBLE, requires_grad=True)
    log_scale = (0.3 * torch.randn(6, 2, dtype=DOUBLE)).requires_grad_()
    stored = normal_posterior(torch.randn(5, 2, dtype=DOUBLE), torch.full((5, 2), 0.7, dtype=DOUBLE))

    def estimate(loc, log_scale, chunk_size=None, shared=False):
        torch.manual_seed(6)
        posterior = normal_posterior(loc, log_scale.exp())
        if shared:
            memory = PosteriorMemory(5)
            memory.push(stored)
            aggregate, count = memory.extend(posterior)
            return density_gap_kl(posterior, standard_prior(2), 3, agg_size, mode, chunk_size, aggregate,
                                  shared=count)
        return density_gap_kl(posterior, standard_prior(2), 3, agg_size, mode, chunk_size,
                              weights="stratified", num_data=50)

    for shared in (False, True):
        whole, chunked = estimate(loc, log_scale, 64, shared), estimate(loc, log_scale, 2, shared)
        assert torch.allclose(whole, chunked, rtol=1e-12, atol=1e-14)
        assert torch.autograd.gradcheck(lambda a, b: estimate(a, b, 4, shared), (loc, log_scale))


def test_stratified_with_a_data_set_smaller_than_the_batch_is_refused():
    posterior = normal_posterior(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"num_data \(3\) must be at least"):
        density_gap_kl(posterior, dist.Normal(torch.zeros(2), 1.0).to_event(1), weights="stratified", num_data=3)
    with pytest.raises(ValueError, match="num_data is needed by"):
        density_gap_kl(posterior, dist.Normal(torch.zeros(2), 1.0).to_event(1), num_data=3)


def _model(x, num_data):
    with pyro.plate("data", num_data, subsample=torch.arange(x.shape[0])):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)


def _guide(x, num_data):
    loc = pyro.param("loc", torch.linspace(-1, 1, 2 * x.shape[0]).view(x.shape[0], 2))
    with pyro.plate("data", num_data, subsample=torch.arange(x.shape[0])):
        pyro.sample("z", dist.Normal(loc, 0.6).to_event(1))


def test_the_stratified_elbo_takes_n_from_the_batch_plate():
    """loss = reconstruction + (N/b) b KL^ with the stratified KL^ for the plate's N, on the same draws."""
    x = torch.tensor([0.3, -0.5, 1.2, 0.1])
    elbo = DensityGapELBO(num_samples=8, aggregate="stratified")
    pyro.set_rng_seed(7)
    loss = elbo.loss(_model, _guide, x, 100)
    assert elbo.last_terms["kl_estimate"] != pytest.approx(0.0)
    pyro.set_rng_seed(7)
    trace = pyro.poutine.trace(_guide).get_trace(x, 100)
    z = trace.nodes["z"]["value"]
    reconstruction = -dist.Normal(z.sum(-1), 1.0).log_prob(x).sum() * 25
    kl = density_gap_kl(trace.nodes["z"]["fn"], dist.Normal(torch.zeros(4, 2), 1.0).to_event(1), 8,
                        weights="stratified", num_data=100)
    assert loss == pytest.approx(float((reconstruction + 100 * kl).detach()), rel=1e-5)


def test_only_a_training_step_pushes_into_the_memory():
    x = torch.tensor([0.3, -0.5, 1.2, 0.1])
    elbo = DensityGapELBO(num_samples=4, aggregate="memory", memory_size=6)
    elbo.loss(_model, _guide, x, 100)
    elbo.differentiable_loss(_model, _guide, x, 100)
    assert elbo.memory.count == 0
    elbo.loss_and_grads(_model, _guide, x, 100)
    assert elbo.memory.count == 4 and torch.equal(elbo.memory.buffers["loc"][:4], pyro.param("loc").detach())
    assert elbo.state_dict()["memory"]["count"] == 4


def test_a_memory_run_killed_mid_epoch_resumes_bit_identical(tmp_path):
    params = {"warmup_epochs": 1, "aggregate": "memory", "memory_size": 40, "num_samples": 4}

    def train(name, **options):
        config = TrainConfig(epochs=2, batch_size=16, optimizer="adam", progress=False, seed=7, **options)
        data = {"synthetic": {"num_train": 96, "num_valid": 32, "num_test": 32, "seed": 1}}
        return new_trainer(tmp_path / name, data, SMALL, "dg", params, config)

    train("straight").fit()
    crashed = crash_at_step(train("crashed", checkpoint_every=4), 10)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    saved = load_checkpoint(tmp_path / "crashed" / "last.pt")
    assert saved["loss_state"]["memory"]["count"] == 40
    resume_trainer(tmp_path / "crashed").fit(resume=True)
    straight, resumed = (load_checkpoint(tmp_path / name / "last.pt") for name in ("straight", "crashed"))
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    memories = straight["loss_state"]["memory"], resumed["loss_state"]["memory"]
    assert torch.equal(memories[0]["buffers"]["loc"], memories[1]["buffers"]["loc"])


def test_a_memory_of_two_sites_is_refused():
    def model(x):
        with pyro.plate("data", 4):
            a = pyro.sample("a", dist.Normal(torch.zeros(4, 2), 1.0).to_event(1))
            b = pyro.sample("b", dist.Normal(torch.zeros(4, 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal((a + b).sum(-1), 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", 4):
            pyro.sample("a", dist.Normal(torch.zeros(4, 2), 1.0).to_event(1))
            pyro.sample("b", dist.Normal(torch.ones(4, 2), 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"keeps the posteriors of one latent site, got \['a', 'b'\]"):
        DensityGapELBO(num_samples=2, aggregate="memory", sites=None).loss(model, guide, torch.zeros(4))
