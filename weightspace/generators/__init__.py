"""Weight generators (hypernetworks that produce new networks from a zoo) and the memorization
baselines they are judged against. One module per method, each registered by name."""

from weightspace.generators.base import (
    MIN_TRAINING_MODELS,
    Generator,
    check_training_set,
    load_generator,
)
from weightspace.generators.registry import (
    build_generator,
    generator_hparams,
    generator_names,
    get_generator,
    parse_hparams,
    register_generator,
)

__all__ = ["MIN_TRAINING_MODELS", "Generator", "build_generator", "check_training_set",
           "generator_hparams", "generator_names", "get_generator", "load_generator",
           "parse_hparams", "register_generator"]

# Built-in methods register themselves on import; each method module is added below as it lands.
from weightspace.generators import average, gaussian, hyperrep, mip, noise, pdiff  # noqa: E402,F401  (all methods)
