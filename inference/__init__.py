"""Objectives (Pyro ELBO subclasses), schedules and training for pyro-textvae."""
from .density_gap import DensityGapELBO, density_gap_kl
from .elbo import elbo_terms
from .handlers import scale_latent
from .objectives import OBJECTIVES, Objective, get_objective
from .schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup
from .trainer import TrainConfig, Trainer

__all__ = [
    "DensityGapELBO",
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
