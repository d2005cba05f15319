"""Weight generators (hypernetworks that produce new networks from a zoo) and the memorization
baselines they are judged against. One module per method, each registered by name.

``generate_zoo`` (``zoo generate``) and ``evaluate_generated`` (``zoo eval-gen``) load on first use.
"""

from catalog.lazy import lazy_exports
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

__getattr__, __dir__, _LAZY = lazy_exports(__name__, {
    "weightspace.generators.output": ["GenerateResult", "generate_zoo"],
    "weightspace.generators.evaluate": ["GenEvalResult", "evaluate_generated"],
})
__all__ = ["MIN_TRAINING_MODELS", "Generator", "build_generator", "check_training_set",
           "generator_hparams", "generator_names", "get_generator", "load_generator",
           "parse_hparams", "register_generator", *_LAZY]

# Built-in methods register themselves on import; each method module is added below as it lands.
from weightspace.generators import average, gaussian, hyperrep, mip, noise, pdiff  # noqa: E402,F401  (all methods)
