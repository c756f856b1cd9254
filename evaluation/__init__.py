"""Metrics, generation, run evaluation and ArviZ pictures for pyro-textvae.

The ArviZ-based names (``to_inference_data``, the ``plot_*`` functions) are imported on first use,
since importing ArviZ takes seconds.
"""
from .generation import decode, posterior_center
from .latent_metrics import (
    active_units,
    hole_metrics,
    mutual_information,
    posterior_kl_per_dim,
)
from .likelihood import importance_log_likelihood, perplexity
from .text_metrics import (
    bleu_precision_recall,
    distinct_n,
    interpolation_scores,
    rouge,
    self_bleu,
)

_LAZY = {
    "to_inference_data": "arviz_data",
    "save_inference_data": "arviz_data",
    "load_inference_data": "arviz_data",
    "plot_hole_picture": "plots",
    "plot_hole_comparison": "plots",
    "plot_sentence_posteriors": "plots",
    "plot_sentence_forest": "plots",
    "plot_dimension_bars": "plots",
    "plot_length_ppc": "plots",
    "evaluate_run": "report",
    "compare_runs": "tables",
}

__all__ = [
    "decode",
    "posterior_center",
    "active_units",
    "hole_metrics",
    "mutual_information",
    "posterior_kl_per_dim",
    "importance_log_likelihood",
    "perplexity",
    "bleu_precision_recall",
    "distinct_n",
    "interpolation_scores",
    "rouge",
    "self_bleu",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
