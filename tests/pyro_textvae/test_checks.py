"""The one validator (pyro_textvae.checks.Range): what it accepts, what it refuses, in one wording, and
that the library's argument checks use it (each refusal below is worded by Range)."""
import pytest
import torch
from matplotlib.figure import Figure

from evaluation.figures import save_figure
from evaluation.text_metrics import distinct_n
from pyro_textvae.bessel import log_bessel_ive
from pyro_textvae.checks import POSITIVE, POSITIVE_INT, Range, check_value
from pyro_textvae.distributions import log_sphere_surface_area


def test_range_refuses_bools_as_numbers_and_takes_ints_as_floats():
    assert not POSITIVE_INT.contains(True) and not Range(float).contains(False)
    assert check_value("x", 3, float) == 3.0 and isinstance(check_value("x", 3, float), float)
    assert not Range(int).contains(2.0)


def test_range_bounds_choices_and_none():
    assert Range(float, minimum=0).contains(0) and not POSITIVE.contains(0) and POSITIVE.contains(1e-9)
    assert Range(str, choices=("a", "b")).contains("a") and not Range(str, choices=("a", "b")).contains("c")
    assert Range(int, minimum=1, optional=True).contains(None) and not POSITIVE_INT.contains(None)


def test_range_names_the_option_the_range_and_the_value():
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got 0$"):
        POSITIVE_INT.check("n", 0)
    with pytest.raises(ValueError, match=r"^lr must be a number > 0, got -1$"):
        POSITIVE.check("lr", -1)
    assert Range(str, choices=("a", "b")).describe() == "one of 'a', 'b'"


@pytest.mark.parametrize("call, message", [
    (lambda: distinct_n([["a"]], True), "distinct_n: n must be an integer >= 1, got True"),
    (lambda: log_sphere_surface_area(1), r"sphere dimension d \(vectors in R\^d\) must be an integer >= 2, got 1"),
    (lambda: log_bessel_ive(-0.5, torch.ones(1)), "Bessel order must be a number >= 0, got -0.5"),
    (lambda: save_figure(Figure(), "unused.png", dpi=0), "dpi must be an integer >= 1, got 0"),
])
def test_library_argument_checks_are_worded_by_the_one_validator(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()
