"""zoo_builders: build specs, the dataset and architecture registries, and vectorized
population training that turns a spec into a zoo."""

from zoo_builders.architectures import ARCHITECTURES
from zoo_builders.build import BuildPlan, build_zoo, plan_build
from zoo_builders.datasets import DATASETS, Dataset, DatasetConfig, load_dataset, load_zoo_dataset
from zoo_builders.spec import BuildSpec, RunConfig, TaskConfig, TrainingConfig, list_presets
from zoo_builders.train import train_classifiers, train_inrs

__all__ = [
    "ARCHITECTURES", "DATASETS", "BuildPlan", "BuildSpec", "Dataset", "DatasetConfig", "RunConfig",
    "TaskConfig", "TrainingConfig", "build_zoo", "list_presets", "load_dataset", "load_zoo_dataset", "plan_build",
    "train_classifiers", "train_inrs",
]
