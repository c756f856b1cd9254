"""One typed config per objective: its parameters, their types, defaults, ranges and meaning.

Each config is a frozen dataclass whose fields are :func:`parameter` s (pythae-style: the config is
the objective's whole description). From the same fields come the ELBO's arguments
(:mod:`inference.objectives`), ``config.json``'s ``[objective] params`` (:meth:`ObjectiveConfig.to_dict`,
read back by :meth:`ObjectiveConfig.from_dict`, old spellings included), the values of
``textvae train --param NAME=VALUE`` (:meth:`ObjectiveConfig.parse`), the shortcut options such as
``--dg-samples`` and the listing of ``textvae objectives``. Importable without torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from pyro_textvae.checks import Range

from .protocol import PAPER_SCHEDULE

AGGREGATES = ("batch", "stratified", "memory")  # DensityGapELBO's aggregate (docs/maths.md#the-data-sets-aggregate)
KERNELS = ("eager", "compiled")  # the per-dimension Gaussian mixture's (inference.gaussian_mixture)
WARMUP = PAPER_SCHEDULE.warmup_epochs  # the KL warm-up of every objective that has one


def parameter(default: Any, help: str, kind: type = float, minimum: float | None = 0, strict: bool = False,
              choices: tuple = (), role: str = "loss", flag: str | None = None, aliases: tuple = ()) -> Any:
    """A config field: ``default``, its :class:`~pyro_textvae.checks.Range` and its ``help``.

    :param role: what it configures: ``"loss"`` (an argument of the ELBO, same name),
        ``"model"`` (a model option, same name), ``"schedule"`` (the latent weight's schedule).
    :param flag: a ``textvae train`` option that sets it besides ``--param`` (e.g. ``--dg-samples``).
    :param aliases: older names, still read from ``config.json`` and ``--param``.
    """
    kind_range = Range(kind, None if choices or kind is str else minimum, strict, choices)
    return field(default=default, metadata={"range": kind_range, "help": help, "role": role, "flag": flag,
                                            "aliases": aliases})


def warmup(default: float = WARMUP) -> Any:
    """The ``warmup_epochs`` field: the latent weight rises linearly from 0 to 1 over that many epochs."""
    return parameter(default, "epochs of the linear warm-up of the latent weight from 0 to 1",
                     role="schedule", flag="--warmup-epochs")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The parameters of an objective (none: the autoencoder). Every value is checked on creation;
    a value out of range raises ``ValueError`` naming the parameter and the value."""

    latent_defaults: ClassVar[dict[str, dict[str, Any]]] = {}  # per model latent: other defaults
    selection: ClassVar[str] = "elbo"  # the validation loss that picks best.pt (inference.objectives.Objective)

    def __post_init__(self) -> None:
        for item in fields(self):
            object.__setattr__(self, item.name, item.metadata["range"].check(item.name, getattr(self, item.name)))

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The config's fields by name."""
        return {item.name: item for item in fields(cls)}

    @classmethod
    def defaults(cls, latent: str | None = None) -> dict[str, Any]:
        """The default of every parameter (for a model of latent ``latent``: :attr:`latent_defaults`)."""
        values = {item.name: item.default for item in fields(cls) if item.default is not MISSING}
        return {**values, **cls.latent_defaults.get(latent, {})}

    @classmethod
    def canonical(cls, key: str, objective: str) -> str:
        """The parameter ``key`` names (an old spelling gives the current name); unknown: ``ValueError``."""
        for item in fields(cls):
            if key == item.name or key in item.metadata["aliases"]:
                return item.name
        valid = ", ".join(sorted(cls.parameters())) or "none"
        raise ValueError(f"objective {objective!r} has no parameter {key!r}; valid: {valid}")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, objective: str, latent: str | None = None,
                  given: Mapping[str, str] | None = None) -> ObjectiveConfig:
        """The config of ``params`` (current names or old spellings), the others at their defaults.

        ``given``: the text the user typed for a parameter, named in the error of a value out of range."""
        values, typed = cls.defaults(latent), {}
        for key, value in (params or {}).items():
            name = cls.canonical(key, objective)
            values[name], typed[name] = value, f"{key}={(given or {}).get(key, value)}"
        for name, item in cls.parameters().items():
            wanted = item.metadata["range"]
            if not wanted.contains(values[name]):
                raise ValueError(f"objective {objective!r}: parameter {typed.get(name, f'{name}={values[name]}')} "
                                 f"must be {wanted.requirement(values[name])}")
        return cls(**values)

    @classmethod
    def parse(cls, key: str, text: str, objective: str) -> Any:
        """The value of ``--param key=text``, read by the parameter's type (``ValueError`` naming it)."""
        kind = cls.parameters()[cls.canonical(key, objective)].metadata["range"].kind
        try:
            return kind(text) if kind is not bool else {"true": True, "false": False}[text.lower()]
        except (ValueError, KeyError):
            raise ValueError(f"objective {objective!r}: parameter {key}={text!r} is not a {kind.__name__}") from None

    def to_dict(self) -> dict[str, Any]:
        """``config.json``'s ``[objective] params``: every parameter by its current name."""
        return asdict(self)

    def part(self, role: str) -> dict[str, Any]:
        """The parameters of ``role`` (``"loss"``, ``"model"``, ``"schedule"``)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.metadata["role"] == role}


@dataclass(frozen=True)
class AEConfig(ObjectiveConfig):
    """The autoencoder: no latent term, so no parameter."""


@dataclass(frozen=True)
class WarmupConfig(ObjectiveConfig):
    """An ELBO whose latent weight is warmed up linearly (VAE, skip-VAE, bow-VAE)."""

    warmup_epochs: float = warmup()


@dataclass(frozen=True)
class BetaConfig(ObjectiveConfig):
    """beta-VAE (Higgins et al. 2017): the KL weight fixed at ``beta``."""

    beta: float = parameter(0.4, "the fixed KL weight", role="schedule")


@dataclass(frozen=True)
class CyclicalConfig(WarmupConfig):
    """Cyclical annealing (Fu et al. 2019): the warm-up restarts every ``cycle_epochs``."""

    cycle_epochs: float = parameter(20.0, "epochs of one cycle of the KL weight", role="schedule")


@dataclass(frozen=True)
class FreeBitsConfig(WarmupConfig):
    """Free bits (Kingma et al. 2016): the KL counted only above ``target_kl``."""

    target_kl: float = parameter(4.0, "the KL (nats) below which the term passes no gradient")


@dataclass(frozen=True)
class BNConfig(WarmupConfig):
    """BN-VAE (Zhu et al. 2020): batch-normalised posterior mean of fixed scale ``bn_gamma``."""

    bn_gamma: float = parameter(0.7, "the fixed scale gamma of the normalised posterior mean (E[KL] >= d gamma^2 / 2)",
                                role="model", aliases=("gamma",))


@dataclass(frozen=True)
class DeltaConfig(WarmupConfig):
    """delta-VAE (Razavi et al. 2019): every dimension's KL at least ``delta``."""

    delta: float = parameter(0.15, "the least KL (nats) of every dimension", role="model")


@dataclass(frozen=True)
class VMFConfig(WarmupConfig):
    """vMF-VAE (Xu and Durrett 2018): von Mises-Fisher posterior of fixed concentration."""

    kappa: float = parameter(13.0, "the fixed vMF concentration", role="model")


@dataclass(frozen=True)
class AAEConfig(ObjectiveConfig):
    """AAE (Makhzani et al. 2016): a discriminator matches q(z) to p(z)."""

    weight: float = parameter(1.0, "lambda, the weight of the encoder's adversarial term")
    hidden_dim: int = parameter(64, "width of the discriminator's two hidden layers", kind=int, minimum=1,
                                aliases=("disc_hidden",))
    lr: float = parameter(1e-3, "Adam learning rate of the discriminator", strict=True, aliases=("disc_lr",))
    warmup_epochs: float = warmup(0.0)


@dataclass(frozen=True)
class WAEConfig(ObjectiveConfig):
    """WAE-MMD (Tolstikhin et al. 2018): lambda MMD^2 of posterior against prior samples."""

    weight: float = parameter(10.0, "lambda, the weight of the MMD", aliases=("lambda",))
    warmup_epochs: float = warmup(0.0)


@dataclass(frozen=True)
class DGConfig(WarmupConfig):
    """DG-VAE (Zhang et al. 2022): the density-gap estimate of KL(q_B(z) || p(z)) as the latent term.
    With a vMF latent the density gap is joint by default (the paper's choice for vMF posteriors)."""

    latent_defaults: ClassVar[dict[str, dict[str, Any]]] = {"vmf": {"mode": "joint"}}
    selection: ClassVar[str] = "objective"

    num_samples: int = parameter(32, "M, samples per posterior of the estimate", kind=int, minimum=1,
                                 flag="--dg-samples")
    agg_size: int = parameter(0, "aggregation size b, 0: the whole batch", kind=int, flag="--agg-size")
    mode: str = parameter("marginal", "per-dimension (marginal) or joint density gap", kind=str,
                          choices=("marginal", "joint"), flag="--dg-mode")
    agg: str = parameter("local", "under torchrun: aggregate each process's batch or the global batch", kind=str,
                         choices=("local", "global"), flag="--dg-agg")
    aggregate: str = parameter("batch", "the aggregate the density gap is taken against: the batch's, the data set's "
                               "by stratified weights, or the batch's and a memory of recent posteriors", kind=str,
                               choices=AGGREGATES, flag="--dg-aggregate")
    memory_size: int = parameter(1024, "K, posteriors in the memory of aggregate=memory", kind=int, minimum=1,
                                 flag="--dg-memory")
    kernel: str = parameter("eager", "the per-dimension (marginal) Gaussian mixture as PyTorch operations or "
                            "fused by torch.compile (needs a C++ compiler; pays for a large memory)", kind=str,
                            choices=KERNELS, flag="--dg-kernel")


@dataclass(frozen=True)
class DGVMFConfig(DGConfig):
    """DG-vMF-VAE: the density gap with joint log densities, a vMF posterior and a uniform prior."""

    latent_defaults: ClassVar[dict[str, dict[str, Any]]] = {}  # joint already

    mode: str = parameter("joint", "per-dimension (marginal) or joint density gap", kind=str,
                          choices=("marginal", "joint"), flag="--dg-mode")
    kappa: float = parameter(13.0, "the fixed vMF concentration", role="model")


CONFIGS: dict[str, type[ObjectiveConfig]] = {
    "elbo": WarmupConfig, "beta": BetaConfig, "cyclical": CyclicalConfig, "free-bits": FreeBitsConfig,
    "free-bits-sentence": FreeBitsConfig, "bn": BNConfig, "delta": DeltaConfig, "vmf": VMFConfig,
    "aae": AAEConfig, "wae-mmd": WAEConfig, "skip": WarmupConfig, "bow": WarmupConfig, "ae": AEConfig,
    "dg": DGConfig, "dg-vmf": DGVMFConfig,
}  # the objectives by name (their ELBOs: inference.objectives.OBJECTIVES), importable without torch


def config_class(objective: str) -> type[ObjectiveConfig]:
    """The config of the objective named ``objective``; an unknown name lists the valid ones."""
    if objective not in CONFIGS:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(CONFIGS)}")
    return CONFIGS[objective]


def describe_parameters(objective: str) -> str:
    """``"name=default, ..."`` of the objective's parameters (``"-"``: none), as the CLI prints them."""
    cls = config_class(objective)
    listing = ", ".join(f"{name}={value}" for name, value in cls.defaults().items()) or "-"
    return listing + "".join(f" ({latent} latent: " + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"
                             for latent, values in cls.latent_defaults.items())


def best_checkpoint_rule() -> str:
    """Which validation loss picks ``best.pt``, from every objective's ``selection`` (the help of
    ``--checkpoint``): the -ELBO, or for the density-gap objectives their own loss."""
    own = [name for name, cls in CONFIGS.items() if cls.selection == "objective"]
    return f"lowest validation -ELBO; for {', '.join(own)} the objective's own validation loss"


def shortcut_options() -> dict[str, Any]:
    """The ``textvae train`` options that set a parameter besides ``--param``: flag -> the field."""
    flags: dict[str, Any] = {}
    for cls in CONFIGS.values():
        for item in fields(cls):
            if item.metadata["flag"]:
                flags.setdefault(item.metadata["flag"], item)
    return flags


def configure_from_text(objective: str, texts: Mapping[str, str], latent: str | None = None) -> ObjectiveConfig:
    """The config of ``--param NAME=TEXT`` values (each read by its parameter's type), the others
    at their defaults for the model's ``latent``; errors name the parameter as typed."""
    cls = config_class(objective)
    values = {key: cls.parse(key, text, objective) for key, text in texts.items()}
    return cls.from_dict(values, objective, latent, given=texts)
