"""weightspace: weight representations, symmetries and metanetworks trained on model zoos."""

from catalog.lazy import lazy_exports

# Modules load on first use of one of their names (the CLI imports only what a command runs).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "weightspace.editing": ["TrainedEditor", "dilate", "editing_demo", "evaluate_editor",
                            "fit_editor", "render_inr"],
    "weightspace.metrics": ["classification_metrics", "regression_metrics"],
    "weightspace.models": ["GMN", "NFN", "DWSNet", "FlatMLP", "HiddenNeuronPermutationLinear",
                           "Metanetwork", "NeuronGraphLayer", "NeuronPermutationLinear", "StatNN",
                           "build_metanetwork", "get_metanetwork", "metanetwork_names",
                           "register_metanetwork"],
    "weightspace.normalization": ["ParamNormalizer"],
    "weightspace.pipeline": ["PredictResult", "TrainResult", "predict_on_zoo", "train_on_zoo"],
    "weightspace.probes": ["ProbeFeatures"],
    "weightspace.representations": ["GraphStructure", "LayerTensors", "flat_to_params",
                                    "graph_batch_to_params", "graph_structure", "graph_to_params",
                                    "layers_to_params", "params_to_flat", "params_to_graph",
                                    "params_to_graph_batch", "params_to_layers", "unbatch_params"],
    "weightspace.symmetry": ["RandomNeuronSymmetry", "flip_signs", "hidden_layers",
                             "permute_neurons", "random_permutations", "random_signs",
                             "scale_neurons"],
    "weightspace.train": ["EarlyStopping", "TrainConfig", "evaluate", "fit"],
    "weightspace.trained": ["TrainedMetanetwork"],
})
