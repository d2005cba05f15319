"""weightspace: weight representations, symmetries and metanetworks trained on model zoos."""

from weightspace.editing import (
    TrainedEditor,
    dilate,
    editing_demo,
    evaluate_editor,
    fit_editor,
    render_inr,
)
from weightspace.metrics import classification_metrics, regression_metrics
from weightspace.models import (
    GMN,
    NFN,
    DWSNet,
    FlatMLP,
    HiddenNeuronPermutationLinear,
    Metanetwork,
    NeuronGraphLayer,
    NeuronPermutationLinear,
    StatNN,
    build_metanetwork,
    get_metanetwork,
    metanetwork_names,
    register_metanetwork,
)
from weightspace.normalization import ParamNormalizer
from weightspace.pipeline import PredictResult, TrainResult, predict_on_zoo, train_on_zoo
from weightspace.probes import ProbeFeatures
from weightspace.representations import (
    GraphStructure,
    LayerTensors,
    flat_to_params,
    graph_batch_to_params,
    graph_structure,
    graph_to_params,
    layers_to_params,
    params_to_flat,
    params_to_graph,
    params_to_graph_batch,
    params_to_layers,
    unbatch_params,
)
from weightspace.symmetry import (
    RandomNeuronSymmetry,
    flip_signs,
    hidden_layers,
    permute_neurons,
    random_permutations,
    random_signs,
    scale_neurons,
)
from weightspace.train import EarlyStopping, TrainConfig, evaluate, fit
from weightspace.trained import TrainedMetanetwork

__all__ = [
    "DWSNet", "FlatMLP", "GMN", "GraphStructure", "HiddenNeuronPermutationLinear", "LayerTensors",
    "Metanetwork", "NFN", "NeuronGraphLayer", "NeuronPermutationLinear", "RandomNeuronSymmetry",
    "StatNN", "build_metanetwork", "flat_to_params", "flip_signs", "get_metanetwork",
    "graph_batch_to_params", "graph_structure", "graph_to_params", "hidden_layers",
    "layers_to_params", "metanetwork_names", "params_to_flat", "params_to_graph",
    "params_to_graph_batch", "params_to_layers", "permute_neurons", "random_permutations",
    "random_signs", "register_metanetwork", "scale_neurons", "unbatch_params",
    "ParamNormalizer", "ProbeFeatures", "TrainConfig", "TrainedMetanetwork", "classification_metrics", "evaluate",
    "fit", "regression_metrics", "TrainedEditor", "dilate", "editing_demo", "evaluate_editor",
    "fit_editor", "render_inr", "EarlyStopping", "PredictResult", "TrainResult", "predict_on_zoo",
    "train_on_zoo",
]
