"""Distributions on the unit sphere S^{d-1} in R^d: von Mises-Fisher and uniform.

The vMF posterior and the uniform prior of the vMF-VAE and DG-vMF-VAE (``docs/maths.md#model-and-guide``;
Xu and Durrett 2018; Davidson et al. 2018, "Hyperspherical Variational Auto-Encoders").

Densities, for a unit mean direction mu, concentration kappa > 0 and v = d/2 - 1:

    vMF(x | mu, kappa) = C_d(kappa) exp(kappa <mu, x>),
    log C_d(kappa)     = v log kappa - (d/2) log(2 pi) - log I_v(kappa),
    uniform(x)         = 1 / |S^{d-1}|,   |S^{d-1}| = 2 pi^{d/2} / Gamma(d/2),

with I_v the modified Bessel function of the first kind (:mod:`pyro_textvae.bessel`, accurate for
kappa up to 1e4 and beyond and for d up to several hundred).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.kl import register_kl

from .bessel import bessel_iv_ratio, log_bessel_iv, log_bessel_ive
from .checks import check_value

__all__ = [
    "HypersphericalUniform",
    "VonMisesFisher",
    "log_bessel_iv",
    "log_bessel_ive",
    "bessel_iv_ratio",
    "log_sphere_surface_area",
    "log_vmf_normalizer",
    "mean_resultant_length",
]


def _check_dim(dim: int) -> int:
    return check_value("sphere dimension d (vectors in R^d)", dim, int, minimum=2)


def log_sphere_surface_area(dim: int) -> float:
    """log |S^{d-1}| = log(2 pi^{d/2} / Gamma(d/2)), the surface area of the unit sphere in R^d."""
    _check_dim(dim)
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)


def mean_resultant_length(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = |E x| for x ~ vMF(mu, kappa) on S^{d-1}.

    Reference: Mardia and Jupp (2000), "Directional Statistics", sec. 9.3.
    """
    return bessel_iv_ratio(0.5 * _check_dim(dim) - 1, kappa)


def _log_vmf_normalizer_plus_kappa(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """log C_d(kappa) + kappa in float64; adding kappa avoids cancellation for large kappa."""
    order = 0.5 * dim - 1
    kappa = kappa.to(torch.float64)
    return order * torch.log(kappa) - 0.5 * dim * math.log(2 * math.pi) - log_bessel_ive(order, kappa)


def log_vmf_normalizer(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa).

    Reference: Mardia and Jupp (2000), eq. 9.3.4.
    """
    _check_dim(dim)
    return (_log_vmf_normalizer_plus_kappa(dim, kappa) - kappa.to(torch.float64)).to(kappa.dtype)


class _Sphere(constraints.Constraint):
    """Unit vectors along the last dim: | |x| - 1 | <= max(100 eps, 1e-6) sqrt(d) for the dtype's eps.

    The 1e-6 floor accepts float32 unit vectors cast to float64.
    """

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        tolerance = max(100 * torch.finfo(value.dtype).eps, 1e-6) * value.size(-1) ** 0.5
        return (torch.linalg.vector_norm(value, dim=-1) - 1).abs() <= tolerance

    def __repr__(self) -> str:
        return "UnitSphere()"


sphere = _Sphere()


class VonMisesFisher(TorchDistribution):
    """von Mises-Fisher distribution on S^{d-1}: p(x) = C_d(kappa) exp(kappa <mu, x>), any d >= 2.

    :param loc: mean directions, shape (..., d), unit norm (normalised here; with validation on,
        a norm further than ``loc_tolerance`` from 1 raises ValueError).
    :param concentration: kappa > 0, broadcastable to ``loc.shape[:-1]``.

    ``rsample`` follows Davidson et al. (2018), sec. 3-4: the component w = <mu, x> is drawn by
    Wood's (1994) rejection sampler, the rest is uniform on the orthogonal sphere, and a
    Householder reflection maps e_1 to mu, so samples are differentiable in ``loc``. Gradients in
    ``kappa`` use only Davidson et al.'s reparameterisation term g_rep: the accepted Beta draw
    eps is held fixed and w = (1 - (1 + b) eps) / (1 - (1 - b) eps) is differentiated through
    b(kappa); their correction term g_cor (from the acceptance probability) is ignored, so the
    kappa gradient is finite but biased. The DG-vMF-VAE keeps kappa fixed, where this is moot.
    """

    arg_constraints = {"loc": sphere, "concentration": constraints.positive}
    support = sphere
    has_rsample = True
    loc_tolerance = 1e-4
    max_rejection_rounds = 100

    def __init__(self, loc: torch.Tensor, concentration: torch.Tensor | float, validate_args: bool | None = None):
        if not isinstance(loc, torch.Tensor) or loc.dim() < 1:
            raise ValueError("VonMisesFisher: loc must be a tensor of shape (..., d)")
        _check_dim(loc.size(-1))
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        validate = validate_args if validate_args is not None else TorchDistribution._validate_args
        norm = torch.linalg.vector_norm(loc, dim=-1, keepdim=True)
        if validate and not bool(((norm - 1).abs() <= self.loc_tolerance).all()):
            raise ValueError(
                f"VonMisesFisher: loc must have unit norm along its last dim (tolerance {self.loc_tolerance}); "
                f"got norms in [{norm.min().item():.6g}, {norm.max().item():.6g}]"
            )
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        self.loc = (loc / norm).expand(batch_shape + loc.shape[-1:])
        self.concentration = concentration.expand(batch_shape)
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    @property
    def dim(self) -> int:
        """d, the dimension of the ambient space R^d."""
        return self.event_shape[0]

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: VonMisesFisher | None = None
    ) -> VonMisesFisher:
        """The same distribution with loc and concentration expanded to ``batch_shape``."""
        new = self._get_checked_instance(VonMisesFisher, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(VonMisesFisher, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        """E x = A_d(kappa) mu."""
        return mean_resultant_length(self.dim, self.concentration).unsqueeze(-1) * self.loc

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """kappa <mu, x> + log C_d(kappa), evaluated as kappa (<mu, x> - 1) + (log C_d + kappa)."""
        if self._validate_args:
            self._validate_sample(value)
        offset = _log_vmf_normalizer_plus_kappa(self.dim, self.concentration).to(self.concentration.dtype)
        return self.concentration * ((self.loc * value).sum(-1) - 1) + offset

    def entropy(self) -> torch.Tensor:
        """H = -kappa A_d(kappa) - log C_d(kappa) = kappa (1 - A_d) - (log C_d + kappa)."""
        return self._entropy_float64().to(self.concentration.dtype)

    def _entropy_float64(self) -> torch.Tensor:
        kappa = self.concentration.to(torch.float64)
        mean_length = mean_resultant_length(self.dim, kappa)
        return kappa * (1 - mean_length) - _log_vmf_normalizer_plus_kappa(self.dim, kappa)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Reparameterised draw: x = Q(mu) (w, sqrt(1 - w^2) v), w from Wood's sampler, v uniform on
        S^{d-2}, Q(mu) orthogonal with Q e_1 = mu (see the class docstring for the kappa gradient)."""
        shape = self._extended_shape(sample_shape)
        kappa = self.concentration.expand(shape[:-1])
        beta_draw = self._accepted_beta_draws(kappa.detach()).to(kappa.dtype)
        b = self._wood_b(kappa)
        one_minus_w = 2 * b * beta_draw / ((1 - beta_draw) + b * beta_draw)
        w = 1 - one_minus_w
        tangent = torch.randn(shape[:-1] + (self.dim - 1,), dtype=kappa.dtype, device=kappa.device)
        tangent = tangent / torch.linalg.vector_norm(tangent, dim=-1, keepdim=True)
        radius = torch.sqrt((one_minus_w * (2 - one_minus_w)).clamp(min=0))
        around_e1 = torch.cat([w.unsqueeze(-1), radius.unsqueeze(-1) * tangent], dim=-1)
        return self._rotate_e1_to_loc(around_e1, self.loc.expand(shape))

    def _wood_b(self, kappa: torch.Tensor) -> torch.Tensor:
        """b = (-2 kappa + sqrt(4 kappa^2 + (d-1)^2)) / (d-1), written without cancellation."""
        m = self.dim - 1
        return m / (2 * kappa + torch.sqrt(4 * kappa**2 + m**2))

    def _accepted_beta_draws(self, kappa: torch.Tensor) -> torch.Tensor:
        """Wood (1994): eps ~ Beta((d-1)/2, (d-1)/2), w = (1 - (1+b) eps)/(1 - (1-b) eps), accepted
        when kappa w + (d-1) log(1 - x0 w) - c >= log u, x0 = (1-b)/(1+b), c = kappa x0 + (d-1) log(1 - x0^2),
        u ~ U(0, 1). All in float64 with the differences rewritten to avoid cancellation."""
        m = self.dim - 1
        shape = kappa.shape
        kappa = kappa.to(torch.float64).reshape(-1)
        b = self._wood_b(kappa)
        beta = torch.distributions.Beta(torch.tensor(0.5 * m, dtype=torch.float64, device=kappa.device),
                                        torch.tensor(0.5 * m, dtype=torch.float64, device=kappa.device))
        accepted = torch.full_like(kappa, float("nan"))
        pending = torch.arange(kappa.numel(), device=kappa.device)
        for _ in range(self.max_rejection_rounds):
            if pending.numel() == 0:
                break
            eps = beta.sample(pending.shape)
            b_p, kappa_p = b[pending], kappa[pending]
            one_minus_w = 2 * b_p * eps / ((1 - eps) + b_p * eps)
            one_minus_x0 = 2 * b_p / (1 + b_p)
            log_ratio = kappa_p * (one_minus_x0 - one_minus_w) + m * (
                torch.log(one_minus_x0 + (1 - one_minus_x0) * one_minus_w) - torch.log(2 * one_minus_x0 / (1 + b_p))
            )
            uniform = torch.rand(pending.shape, dtype=torch.float64, device=kappa.device)
            ok = torch.log(uniform) <= log_ratio
            accepted[pending[ok]] = eps[ok]
            pending = pending[~ok]
        if pending.numel() > 0:
            raise RuntimeError(
                f"VonMisesFisher.rsample: Wood's rejection sampler left {pending.numel()} of {kappa.numel()} "
                f"draws unaccepted after max_rejection_rounds={self.max_rejection_rounds} rounds"
            )
        return accepted.reshape(shape)

    @staticmethod
    def _rotate_e1_to_loc(x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        """Apply an orthogonal map sending e_1 to mu: the Householder reflection
        H_u = I - 2 u u^T / |u|^2 with u = e_1 - mu when mu_1 <= 0 (Davidson et al. 2018, alg. 1), and
        -H_u with u = e_1 + mu when mu_1 > 0, so |u|^2 >= 2 for every mu (no 0/0 at mu = e_1).
        Either map leaves the sample's distribution unchanged, since v is uniform."""
        sign = torch.where(loc[..., :1] > 0, -torch.ones_like(loc[..., :1]), torch.ones_like(loc[..., :1]))
        e1 = torch.zeros_like(loc)
        e1[..., 0] = 1
        u = e1 - sign * loc
        reflected = x - 2 * u * (u * x).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True)
        return sign * reflected


class HypersphericalUniform(TorchDistribution):
    """Uniform distribution on S^{d-1} in R^d: log p(x) = -log |S^{d-1}|, |S^{d-1}| = 2 pi^{d/2} / Gamma(d/2).

    Samples are normalised standard Gaussians (Muller 1959). The prior of the vMF-VAE
    (``docs/maths.md#model-and-guide``).
    """

    arg_constraints: dict = {}
    support = sphere
    has_rsample = True

    def __init__(
        self,
        dim: int,
        batch_shape=torch.Size(),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ):
        self._log_area = log_sphere_surface_area(_check_dim(dim))
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._dtype = dtype if dtype is not None else torch.get_default_dtype()
        super().__init__(torch.Size(batch_shape), torch.Size([dim]), validate_args=validate_args)

    @property
    def dim(self) -> int:
        """d, the dimension of the ambient space R^d."""
        return self.event_shape[0]

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: HypersphericalUniform | None = None
    ) -> HypersphericalUniform:
        """The same distribution with batch shape ``batch_shape``."""
        new = self._get_checked_instance(HypersphericalUniform, _instance)
        new._log_area, new._device, new._dtype = self._log_area, self._device, self._dtype
        super(HypersphericalUniform, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        """E x = 0."""
        return torch.zeros(self.batch_shape + self.event_shape, dtype=self._dtype, device=self._device)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """g / |g| with g ~ N(0, I_d)."""
        gaussian = torch.randn(self._extended_shape(sample_shape), dtype=self._dtype, device=self._device)
        return gaussian / torch.linalg.vector_norm(gaussian, dim=-1, keepdim=True)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """-log |S^{d-1}| for every x on the sphere."""
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return value.new_full(shape, -self._log_area)

    def entropy(self) -> torch.Tensor:
        """log |S^{d-1}|."""
        return torch.full(self.batch_shape, self._log_area, dtype=self._dtype, device=self._device)


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(q: VonMisesFisher, p: HypersphericalUniform) -> torch.Tensor:
    """KL(vMF(mu, kappa) || U(S^{d-1})) = kappa A_d(kappa) + log C_d(kappa) + log |S^{d-1}|, constant in mu
    (Davidson et al. 2018, sec. 3.3)."""
    if q.dim != p.dim:
        raise ValueError(f"KL(VonMisesFisher || HypersphericalUniform): dimensions differ ({q.dim} vs {p.dim})")
    kl = p._log_area - q._entropy_float64()
    return kl.to(q.concentration.dtype).expand(torch.broadcast_shapes(q.batch_shape, p.batch_shape))
