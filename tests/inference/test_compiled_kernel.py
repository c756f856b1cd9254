"""The compiled per-dimension mixture (``kernel="compiled"``): the eager kernel's estimate and gradients
for every aggregate, weighting and chunking, through the estimator and the ELBO; an unknown kernel is
refused, and so is the compiled one where no C++ compiler is on PATH."""
from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch

from inference.density_gap import density_gap_kl
from inference.density_gap_elbo import DensityGapELBO
from inference.gaussian_mixture import check_compiler
from tests.inference.test_density_gap import DOUBLE, normal_posterior, standard_prior


def _has_compiler() -> bool:
    try:
        check_compiler()
    except ValueError:
        return False
    return True


needs_compiler = pytest.mark.skipif(not _has_compiler(), reason="torch.compile needs a C++ compiler ($CXX, g++, c++ "
                                    "or clang++); none on PATH")


def _estimate_and_gradients(kernel: str, lead: tuple[int, ...], shared: int, **options) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    loc = torch.randn(*lead, 8, 3, generator=generator, dtype=DOUBLE).requires_grad_()
    log_scale = (0.5 * torch.randn(*lead, 8, 3, generator=generator, dtype=DOUBLE)).requires_grad_()
    posterior = normal_posterior(loc, log_scale.exp())
    memory_loc = torch.randn(shared, 3, generator=generator, dtype=DOUBLE).expand(*lead, shared, 3)
    memory_scale = (0.5 * torch.randn(shared, 3, generator=generator, dtype=DOUBLE)).exp().expand(*lead, shared, 3)
    aggregate = normal_posterior(torch.cat([loc, memory_loc], -2), torch.cat([log_scale.exp(), memory_scale], -2))
    torch.manual_seed(1)
    kl = density_gap_kl(posterior, standard_prior(3), num_samples=5, aggregate=aggregate, shared=shared,
                        kernel=kernel, **options)
    kl.sum().backward()
    return [kl.detach(), loc.grad, log_scale.grad]


@needs_compiler
@pytest.mark.parametrize(("lead", "shared", "options"), [
    ((), 6, {}),
    ((2,), 6, {"chunk_size": 7}),
    ((), 0, {"agg_size": 3, "weights": "stratified", "num_data": 20}),
    ((2,), 0, {"agg_size": 5, "chunk_size": 9}),
])
def test_the_compiled_kernel_gives_the_eager_estimate_and_gradients(lead, shared, options):
    eager = _estimate_and_gradients("eager", lead, shared, **options)
    compiled = _estimate_and_gradients("compiled", lead, shared, **options)
    for expected, found in zip(eager, compiled):
        assert found.shape == expected.shape
        torch.testing.assert_close(found, expected, rtol=1e-9, atol=1e-12)


@needs_compiler
def test_the_elbo_passes_its_kernel_to_the_estimator():
    """The penalty of a memory ELBO with the compiled kernel is the eager one's, and so are its gradients."""
    generator = torch.Generator().manual_seed(2)
    loc = torch.randn(6, 4, generator=generator, requires_grad=True)
    scale = torch.rand(6, 4, generator=generator) + 0.2
    found = []
    for kernel in ("eager", "compiled"):
        elbo = DensityGapELBO(num_samples=4, aggregate="memory", memory_size=5, kernel=kernel)
        elbo.memory.push(dist.Normal(torch.randn(5, 4, generator=torch.Generator().manual_seed(3)), 0.7).to_event(1))
        torch.manual_seed(4)
        penalty = elbo.penalty(dist.Normal(loc, scale).to_event(1), dist.Normal(torch.zeros(4), 1.0).to_event(1),
                               loc)
        (gradient,) = torch.autograd.grad(penalty, loc)
        found.append((penalty.detach(), gradient))
    torch.testing.assert_close(found[1], found[0], rtol=1e-5, atol=1e-6)


def test_an_unknown_kernel_is_refused_naming_the_option():
    loc, scale = torch.zeros(4, 2, dtype=DOUBLE), torch.ones(4, 2, dtype=DOUBLE)
    with pytest.raises(ValueError, match=r"kernel must be one of 'eager', 'compiled'"):
        density_gap_kl(normal_posterior(loc, scale), standard_prior(2), kernel="fused")
    with pytest.raises(ValueError, match=r"kernel must be one of 'eager', 'compiled'"):
        DensityGapELBO(kernel="fused")


def test_the_compiled_kernel_without_a_compiler_is_refused_in_one_line(monkeypatch):
    """Before any step: torch.compile would otherwise fail at the first one, deep in a traceback."""
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr("inference.gaussian_mixture.shutil.which", lambda name: None)
    with pytest.raises(ValueError, match=r'^kernel="compiled" needs a C\+\+ compiler .*no-such-compiler, g\+\+'):
        DensityGapELBO(kernel="compiled")
    DensityGapELBO(kernel="eager")
