"""Loss-landscape and weight-space analysis of model populations (issue 13).

Pure functions over stacked populations ``{name: Tensor[P, *shape]}`` of one
:class:`~catalog.network.NetworkSpec`, vectorized over the members; the CLI stores their results
in a sidecar table and plots them.

| file | concept |
| --- | --- |
| ``evaluation.py`` | cross-entropy loss and accuracy of every member |
| ``hessian.py`` | Hessian top eigenvalue (power iteration) and trace (Hutchinson) |
| ``cka.py`` | linear CKA between representations |
| ``pairs.py`` | seed pairs of a metadata table, per-row means of a pairwise metric |
| ``connectivity.py`` | loss/accuracy along a line or a trained Bezier curve, ``mc`` |
| ``alignment.py`` | weight matching (git re-basin) of hidden neurons |
| ``averaging.py`` | accuracy of the weight average of (aligned) pairs |
| ``subspace.py`` | per-layer singular-value spectra, ranks, held-out projection |
| ``phase.py`` | phase heatmaps, line and scatter plots of a metadata table |
| ``run.py`` | ``analyze_zoo`` (metrics of a zoo's models stored as sidecar tables) and ``plot_zoo`` |
"""

from weightspace.analysis.alignment import align_to, weight_matching
from weightspace.analysis.averaging import avg_acc_delta
from weightspace.analysis.cka import linear_cka
from weightspace.analysis.connectivity import (
    PathResult,
    bezier_barrier,
    linear_barrier,
    mode_connectivity,
)
from weightspace.analysis.evaluation import population_loss_accuracy
from weightspace.analysis.hessian import hessian_top_eig, hessian_trace
from weightspace.analysis.pairs import mean_over_pairs, seed_pairs
from weightspace.analysis.phase import PhaseGrid, line_plot, phase_heatmap, scatter_plot
from weightspace.analysis.run import (
    METRICS,
    AnalyzeConfig,
    AnalyzeResult,
    analyze_zoo,
    plot_zoo,
)
from weightspace.analysis.subspace import (
    SubspaceResult,
    explained_variance,
    layer_matrices,
    plot_spectrum,
    rank_for_variance,
    subspace_analysis,
)

__all__ = [
    "METRICS", "AnalyzeConfig", "AnalyzeResult", "PathResult", "PhaseGrid", "SubspaceResult",
    "align_to", "analyze_zoo", "avg_acc_delta", "bezier_barrier",
    "explained_variance", "hessian_top_eig", "hessian_trace", "layer_matrices", "line_plot",
    "linear_barrier", "linear_cka", "mean_over_pairs", "mode_connectivity", "phase_heatmap",
    "plot_spectrum", "plot_zoo", "population_loss_accuracy", "rank_for_variance", "scatter_plot", "seed_pairs",
    "subspace_analysis", "weight_matching",
]
