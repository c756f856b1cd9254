"""Weight schedules against values worked out by hand."""
from __future__ import annotations

import pytest

from inference.schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup


def test_constant_schedule_is_the_same_at_every_step():
    schedule = ConstantSchedule(0.4)
    assert [schedule(t) for t in (0, 1, 10**6)] == [0.4, 0.4, 0.4]


def test_linear_warmup_rises_by_equal_steps_and_then_stays():
    schedule = LinearWarmup(steps=4)
    assert [schedule(t) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_linear_warmup_between_start_and_end():
    schedule = LinearWarmup(steps=10, start=0.2, end=0.7)
    assert schedule(0) == pytest.approx(0.2)
    assert schedule(5) == pytest.approx(0.45)
    assert schedule(10) == schedule(99) == pytest.approx(0.7)


def test_a_warmup_of_zero_steps_starts_at_its_end():
    assert LinearWarmup(steps=0, end=0.9)(0) == 0.9


def test_cyclical_schedule_restarts_every_cycle():
    schedule = CyclicalSchedule(cycle=5, warmup=2)
    assert [schedule(t) for t in range(11)] == [0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0]


def test_cyclical_schedule_whose_warmup_fills_the_cycle_is_a_saw_tooth():
    schedule = CyclicalSchedule(cycle=4, warmup=4, end=2.0)
    assert [schedule(t) for t in range(6)] == [0.0, 0.5, 1.0, 1.5, 0.0, 0.5]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConstantSchedule(-0.1),
        lambda: LinearWarmup(steps=-1),
        lambda: LinearWarmup(steps=3, start=-1.0),
        lambda: LinearWarmup(steps=3, end=-1.0),
        lambda: CyclicalSchedule(cycle=0, warmup=1),
        lambda: CyclicalSchedule(cycle=4, warmup=0),
        lambda: CyclicalSchedule(cycle=4, warmup=5),
    ],
)
def test_a_schedule_out_of_range_is_refused(make):
    with pytest.raises(ValueError):
        make()
