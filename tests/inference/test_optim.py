"""``ClippedOptim``: one clip of the global gradient norm, then the per-parameter steps; the lr is settable."""
from __future__ import annotations

import math

import pyro
import pytest
import torch

from inference.optim import ClippedOptim
from pyro_textvae.errors import NonFiniteError


def _params_with_grads(*grads):
    params = []
    for index, grad in enumerate(grads):
        param = pyro.param(f"p{index}", torch.zeros(len(grad)))
        param.unconstrained().grad = torch.tensor(grad)
        params.append(param.unconstrained())
    return params


def test_sgd_step_uses_the_globally_clipped_gradient():
    """g = (3, 4) and (12,): ||g|| = 13; clipped to 6.5 each gradient is halved."""
    params = _params_with_grads([3.0, 4.0], [12.0])
    optim = ClippedOptim("sgd", lr=0.1, clip_norm=6.5)
    optim(set(params))
    assert optim.last_norm == pytest.approx(13.0)
    torch.testing.assert_close(params[0].detach(), torch.tensor([-0.15, -0.2]))
    torch.testing.assert_close(params[1].detach(), torch.tensor([-0.6]))


def test_a_norm_under_the_clip_is_left_alone():
    params = _params_with_grads([0.3, 0.4])
    optim = ClippedOptim("sgd", lr=1.0, clip_norm=5.0)
    optim(set(params))
    assert optim.last_norm == pytest.approx(0.5)
    torch.testing.assert_close(params[0].detach(), torch.tensor([-0.3, -0.4]))


def test_without_a_clip_the_norm_is_still_recorded():
    params = _params_with_grads([30.0, 40.0])
    optim = ClippedOptim("sgd", lr=0.01, clip_norm=None)
    optim(set(params))
    assert optim.last_norm == pytest.approx(50.0)
    torch.testing.assert_close(params[0].detach(), torch.tensor([-0.3, -0.4]))


def test_gradients_are_released_after_the_step():
    params = _params_with_grads([1.0])
    ClippedOptim("adam", lr=1e-3)(set(params))
    assert params[0].grad is None


def test_the_hook_sees_the_parameters_in_name_order_before_clipping():
    params = _params_with_grads([1.0], [2.0], [3.0])
    seen = []

    def hook(ordered):
        seen.extend(float(p.grad[0]) for p in ordered)
        for p in ordered:
            p.grad.mul_(2.0)

    optim = ClippedOptim("sgd", lr=1.0, clip_norm=None, grad_hook=hook)
    optim({params[2], params[0], params[1]})
    assert seen == [1.0, 2.0, 3.0]
    assert optim.last_norm == pytest.approx(2 * math.sqrt(14))


def test_scale_lr_and_set_lr_reach_existing_and_future_optimisers():
    optim = ClippedOptim("sgd", lr=0.5)
    optim(set(_params_with_grads([1.0])))
    optim.scale_lr(0.5)
    assert optim.lr == 0.25
    assert [g["lr"] for o in optim.optim_objs.values() for g in o.param_groups] == [0.25]
    optim.set_lr(0.1)
    later = pyro.param("later", torch.zeros(1)).unconstrained()
    later.grad = torch.ones(1)
    optim({later})
    torch.testing.assert_close(later.detach(), torch.tensor([-0.1]))


def test_a_restored_state_is_kept_and_scaled_until_its_parameter_steps():
    """A state set on resume and not yet used by a step is in :meth:`get_state` (a checkpoint written
    before the next step keeps Adam's moments) and a halving of the lr meanwhile reaches it."""
    first = ClippedOptim("adam", lr=1e-3)
    first(set(_params_with_grads([1.0])))
    saved = first.get_state()
    resumed = ClippedOptim("adam", lr=1e-3)
    resumed.set_state(saved)
    assert resumed.get_state() == saved
    resumed.scale_lr(0.5)
    param = pyro.param("p0").unconstrained()
    param.grad = torch.ones(1)
    resumed({param})
    (optimizer,) = resumed.optim_objs.values()
    assert optimizer.param_groups[0]["lr"] == 5e-4 and optimizer.state_dict()["state"][0]["step"] == 2


def test_a_non_finite_gradient_norm_is_refused_before_any_step():
    params = _params_with_grads([float("nan"), 1.0])
    before = params[0].detach().clone()
    with pytest.raises(NonFiniteError, match="non-finite"):
        ClippedOptim("sgd", lr=0.1)(set(params))
    torch.testing.assert_close(params[0].detach(), before, equal_nan=True)


@pytest.mark.parametrize("name, lr, clip", [("rmsprop", 0.1, 5.0), ("sgd", 0.0, 5.0), ("adam", 0.1, 0.0)])
def test_bad_settings_are_refused(name, lr, clip):
    with pytest.raises(ValueError):
        ClippedOptim(name, lr=lr, clip_norm=clip)
