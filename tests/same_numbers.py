"""One comparison for JSON results that two code paths must agree on."""
from __future__ import annotations

import pytest


def assert_same_numbers(actual, expected, where: str = "eval.json") -> None:
    """``actual`` equals ``expected``: dicts key for key, lists item for item, floats within 1e-5
    relative (float32 sums over many draws differ by ~1e-6 between CPUs; NaN equals NaN), anything else
    exactly; ``where`` names the place that differs."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_same_numbers(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same_numbers(a, e, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-9, nan_ok=True), where
    else:
        assert actual == expected, where
