"""Objectives (Pyro ELBO subclasses), schedules and training for pyro-textvae.

The names below are imported on first use (PEP 562), so that reading :mod:`inference.train_config`
(the options the command line shows) imports neither torch nor Pyro.
"""
from pyro_textvae.lazy import lazy_getattr

_LAZY = {
    "AdversarialELBO": "adversarial",
    "density_gap_kl": "density_gap",
    "DensityGapELBO": "density_gap_elbo",
    "PosteriorMemory": "posterior_memory",
    "LoggedTrace_ELBO": "elbo",
    "elbo_terms": "elbo",
    "FreeBitsELBO": "free_bits",
    "SentenceFreeBitsELBO": "free_bits",
    "scale_latent": "handlers",
    "WassersteinMMDELBO": "mmd",
    "ClippedOptim": "optim",
    "mmd_u_statistic": "mmd",
    "OBJECTIVES": "objectives",
    "Objective": "objectives",
    "get_objective": "objectives",
    "ConstantSchedule": "schedules",
    "CyclicalSchedule": "schedules",
    "LinearWarmup": "schedules",
    "TrainConfig": "train_config",
    "Trainer": "trainer",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
