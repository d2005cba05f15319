"""Loss-landscape and weight-space analysis of model populations (issue 13).

Pure functions over stacked populations ``{name: Tensor[P, *shape]}`` of one
:class:`~catalog.network.NetworkSpec`, vectorized over the members; the CLI stores their results
in a sidecar table and plots them.

| file | concept |
| --- | --- |
| ``evaluation.py`` | cross-entropy loss and accuracy of every member |
| ``hessian.py`` | Hessian top eigenvalue (Lanczos) and trace (Hutchinson) |
| ``cka.py`` | linear CKA between representations |
| ``pairs.py`` | seed pairs of a metadata table, per-row means of a pairwise metric |
| ``connectivity.py`` | loss/accuracy along a line or a trained Bezier curve, ``mc`` |
| ``alignment.py`` | weight matching (git re-basin) of hidden neurons |
| ``averaging.py`` | accuracy of the weight average of (aligned) pairs |
| ``subspace.py`` | per-layer singular-value spectra, ranks, held-out projection |
| ``phase.py`` | phase heatmaps, line and scatter plots of a metadata table |
| ``run.py`` | ``analyze_zoo`` (metrics of a zoo's models stored as sidecar tables) and ``plot_zoo`` |
"""

from catalog.lazy import lazy_exports

# Modules load on first use of one of their names.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "weightspace.analysis.alignment": ["align_to", "weight_matching"],
    "weightspace.analysis.averaging": ["avg_acc_delta"],
    "weightspace.analysis.cka": ["linear_cka"],
    "weightspace.analysis.connectivity": ["PathResult", "bezier_barrier", "linear_barrier",
                                          "mode_connectivity"],
    "weightspace.analysis.evaluation": ["population_loss_accuracy", "recompute_batch_norm"],
    "weightspace.analysis.hessian": ["hessian_top_eig", "hessian_trace"],
    "weightspace.analysis.pairs": ["mean_over_pairs", "seed_pairs"],
    "weightspace.analysis.phase": ["PhaseGrid", "line_plot", "phase_heatmap", "plot_label", "scatter_plot"],
    "weightspace.analysis.run": ["METRICS", "AnalyzeConfig", "AnalyzeResult", "analyze_zoo",
                                 "plot_summary", "plot_zoo"],
    "weightspace.analysis.subspace": ["SubspaceResult", "explained_variance", "layer_matrices",
                                      "plot_spectrum", "rank_for_variance", "subspace_analysis"],
})
