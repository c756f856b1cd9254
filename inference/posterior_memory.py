"""A memory of recent posteriors: the components of the data set's aggregate q_D beyond the batch.

The density gap against the batch aggregate q_B forgives at most log b nats of per-sentence KL
(``docs/maths.md#aggregate-kl-and-mutual-information``). :class:`PosteriorMemory` keeps the parameters
of the posteriors q(z|x_j) of the last K training sentences, detached (as momentum-contrast methods
keep their keys), so that q_D can be approximated by the b + K components of the batch and the memory
(``docs/maths.md#the-data-sets-aggregate``): gradients flow through the batch's samples and
components, never through the memory's. It works for any posterior family whose distribution is
built from the tensor parameters its ``arg_constraints`` names (diagonal ``Normal`` wrapped in
``Independent``, ``VonMisesFisher``), the same families :func:`inference.distributed.gather_distribution`
gathers.
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent

from pyro_textvae.checks import POSITIVE_INT


def _base_of(distribution: Distribution) -> tuple[Distribution, int]:
    """The innermost distribution and the event dims ``Independent`` wrappers add around it."""
    wrapped = 0
    while isinstance(distribution, Independent):
        wrapped += distribution.reinterpreted_batch_ndims
        distribution = distribution.base_dist
    return distribution, wrapped


def _parameters(distribution: Distribution) -> dict[str, torch.Tensor]:
    """The tensor parameters named in ``arg_constraints``, each expanded to the full batch shape."""
    shape = distribution.batch_shape
    params = {}
    for name in distribution.arg_constraints:
        value = distribution.__dict__.get(name)
        if torch.is_tensor(value):
            extra = value.shape[len(shape):] if value.dim() > len(shape) else ()
            params[name] = value.expand(*shape, *extra)
    if not params:
        raise TypeError(f"a posterior memory cannot hold a {type(distribution).__name__}: it exposes no tensor "
                        "parameters")
    return params


class PosteriorMemory:
    """A first-in, first-out queue of the parameters of the last ``size`` posteriors pushed.

    :meth:`push` adds a batch's posteriors (detached; with leading particle dims, those of the first
    particle, which vectorised particles share); :meth:`extend` returns the batch's distribution with the
    memory's components appended along the data dim. :meth:`state_dict` / :meth:`load_state_dict` save and
    restore it exactly (``last.pt``), so a resumed run continues with the same memory.
    """

    def __init__(self, size: int) -> None:
        self.size = POSITIVE_INT.check("memory_size", size)
        self.buffers: dict[str, torch.Tensor] = {}
        self.count = 0
        self.position = 0

    def push(self, posterior: Distribution) -> None:
        """Write the posteriors of ``posterior`` (batch shape ``(..., B)``) over the oldest entries."""
        base, _ = _base_of(posterior)
        lead = len(posterior.batch_shape) - 1
        for name, value in _parameters(base).items():
            rows = value.detach()[(0,) * lead] if lead else value.detach()
            if name not in self.buffers:
                self.buffers[name] = rows.new_zeros(self.size, *rows.shape[1:])
            self._write(self.buffers[name], rows)
        batch = posterior.batch_shape[-1]
        self.count = min(self.size, self.count + batch)
        self.position = (self.position + batch) % self.size

    def _write(self, buffer: torch.Tensor, rows: torch.Tensor) -> None:
        rows = rows[-self.size:]
        index = (self.position + torch.arange(rows.shape[0], device=buffer.device)) % self.size
        buffer[index] = rows.to(buffer)

    def extend(self, aggregate: Distribution) -> tuple[Distribution, int]:
        """``aggregate`` (batch shape ``(..., G)``) with the memory's ``count`` components appended
        along the data dim (expanded over the leading dims), and that count."""
        if self.count == 0:
            return aggregate, 0
        base, wrapped = _base_of(aggregate)
        lead = aggregate.batch_shape[:-1]
        params = {}
        for name, value in _parameters(base).items():
            stored = self.buffers[name][: self.count]
            if stored.shape[1:] != value.shape[len(lead) + 1:]:
                raise ValueError(f"posterior memory: {name} of shape {tuple(stored.shape[1:])} a component does "
                                 f"not fit the posterior's {tuple(value.shape[len(lead) + 1:])}")
            stored = stored.to(value).expand(*lead, *stored.shape)
            params[name] = torch.cat([value, stored], len(lead))
        extended: Distribution = type(base)(**params, validate_args=False)
        if wrapped:
            extended = Independent(extended, wrapped)
        return extended, self.count

    def state_dict(self) -> dict:
        """The buffers, ``count`` and ``position``: what :meth:`load_state_dict` restores."""
        return {"buffers": dict(self.buffers), "count": self.count, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output, refusing one that does not fit this memory's size."""
        buffers, count, position = state.get("buffers"), state.get("count"), state.get("position")
        fits = (isinstance(buffers, dict) and all(torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == self.size
                                                  for v in buffers.values())
                and isinstance(count, int) and 0 <= count <= self.size
                and isinstance(position, int) and 0 <= position < self.size and (count == 0 or buffers))
        if not fits:
            raise ValueError(f"the posterior memory's saved state does not fit a memory of {self.size} posteriors")
        self.buffers = {name: value.clone() for name, value in buffers.items()}
        self.count, self.position = count, position
