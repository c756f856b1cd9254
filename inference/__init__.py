"""Objectives (Pyro ELBO subclasses), schedules and training for pyro-textvae."""
from .adversarial import AdversarialELBO
from .density_gap import density_gap_kl
from .density_gap_elbo import DensityGapELBO
from .elbo import LoggedTrace_ELBO, elbo_terms
from .free_bits import FreeBitsELBO, SentenceFreeBitsELBO
from .handlers import scale_latent
from .mmd import WassersteinMMDELBO, mmd_u_statistic
from .objectives import OBJECTIVES, Objective, get_objective
from .schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup
from .trainer import TrainConfig, Trainer

__all__ = [
    "AdversarialELBO",
    "DensityGapELBO",
    "FreeBitsELBO",
    "LoggedTrace_ELBO",
    "SentenceFreeBitsELBO",
    "WassersteinMMDELBO",
    "mmd_u_statistic",
    "density_gap_kl",
    "elbo_terms",
    "scale_latent",
    "OBJECTIVES",
    "Objective",
    "get_objective",
    "ConstantSchedule",
    "CyclicalSchedule",
    "LinearWarmup",
    "TrainConfig",
    "Trainer",
]
