"""Metrics, generation, run evaluation and ArviZ pictures for pyro-textvae.

Every name is imported on first use (PEP 562): importing ArviZ takes seconds, torch about one,
and the command-line parser is built from the ``*_command`` modules without either.
"""
from pyro_textvae.lazy import lazy_getattr

_LAZY = {
    "decode": "generation",
    "posterior_center": "generation",
    "active_units": "latent_metrics",
    "hole_metrics": "latent_metrics",
    "mutual_information": "latent_metrics",
    "posterior_kl_per_dim": "latent_metrics",
    "importance_log_likelihood": "likelihood",
    "perplexity": "likelihood",
    "negative_log_likelihood_summary": "likelihood",
    "sentence_log_likelihood": "sentence_likelihood",
    "bleu_precision_recall": "text_metrics",
    "distinct_n": "text_metrics",
    "interpolation_scores": "text_metrics",
    "rouge": "text_metrics",
    "self_bleu": "text_metrics",
    "to_inference_data": "arviz_data",
    "save_inference_data": "arviz_data",
    "load_inference_data": "arviz_data",
    "encode_split": "arviz_data",
    "dimension_statistics": "arviz_data",
    "SplitPosteriors": "arviz_data",
    "plot_hole_picture": "plots",
    "plot_hole_comparison": "plots",
    "plot_sentence_posteriors": "plots",
    "plot_sentence_forest": "plots",
    "plot_dimension_bars": "plots",
    "plot_length_ppc": "plots",
    "plot_toy_grid": "plots",
    "shared_active_dims": "plots",
    "most_active_dims": "plots",
    "aggregate_density_grid": "plots",
    "prior_radii": "plots",
    "save_figure": "figures",
    "read_sweep": "sweep",
    "plot_sweep": "sweep",
    "evaluate_run": "report",
    "collect_posteriors": "split_posteriors",
    "latent_prior": "split_posteriors",
    "compare_runs": "tables",
    "targets_table": "targets",
    "write_targets": "targets",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
