"""The options of a :class:`~pyro_textvae.model.TextVAE`, importable without torch (the command
line reads its defaults from here before deciding whether to import anything heavy)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .checks import POSITIVE_INT
from .errors import OptionError, OptionName, option_error

DEFAULT_MAX_LENGTH = 200  # tokens: `textvae train --max-length`'s default (short_yelp's longest sentence has 16)
LATENTS = ("normal", "vmf")
POSTERIORS = ("gaussian", "bn", "delta")
INITS = ("pytorch", "paper")  # how the parameters are drawn (pyro_textvae.initialisation)
PRECISIONS = ("fp32", "bf16")  # of the networks (pyro_textvae.precision)
DEFAULT_PRECISION = "fp32"
MIN_VOCAB_SIZE = 5  # 4 specials + 1 word
ACTIVE_UNIT_THRESHOLD = 0.01  # a latent dimension is active where Var_x E[z_k|x] >= this (Burda et al. 2016)


def check_precision(precision: str, where: str = "precision") -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise an OptionError naming ``where``."""
    if precision not in PRECISIONS:
        raise option_error(where, f"must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class TextVAEConfig:
    """Sizes and options of a :class:`pyro_textvae.model.TextVAE`; defaults are the paper's
    (``docs/maths.md#paper-settings``)."""

    vocab_size: int
    embed_dim: int = 128
    hidden_dim: int = 512
    latent_dim: int = 32
    dropout_in: float = 0.5
    dropout_out: float = 0.5
    latent: str = "normal"
    kappa: float = 13.0
    posterior: str = "gaussian"
    bn_gamma: float = 0.7
    delta: float = 0.15
    skip: bool = False
    bow: bool = False
    init: str = "pytorch"
    linear_bias: bool | None = None

    @property
    def has_linear_bias(self) -> bool:
        """Whether the posterior head, the decoder's z-to-state map and its output layer have biases:
        :attr:`linear_bias`, or where it is None, all but under ``init="paper"`` (bias-free there)."""
        return self.init != "paper" if self.linear_bias is None else self.linear_bias

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "hidden_dim", "latent_dim"):
            value = getattr(self, name)
            POSITIVE_INT.check(f"model option {name}", value)
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"model option vocab_size must be at least {MIN_VOCAB_SIZE} (4 specials + 1 word), "
                             f"got {self.vocab_size}")
        for name in ("dropout_in", "dropout_out"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model option {name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.latent not in LATENTS:
            raise ValueError(f"model option latent must be one of {LATENTS}, got {self.latent!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"model option posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.init not in INITS:
            raise ValueError(f"model option init must be one of {INITS}, got {self.init!r}")
        if self.latent == "vmf" and self.posterior != "gaussian":
            raise ValueError("model option posterior must be 'gaussian' (the default) with latent='vmf'")
        if self.latent == "vmf" and self.latent_dim < 2:
            raise OptionError("model option ", OptionName("latent_dim"), " must be >= 2 for ", OptionName("latent"),
                              " 'vmf'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "model config") -> TextVAEConfig:
        """Build from a JSON dict, refusing unknown keys, wrong types and bad values with the
        option's name and ``where`` (the file and section)."""
        from .io import dataclass_from_dict

        return dataclass_from_dict(cls, values, where)
