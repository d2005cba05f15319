"""Constants shared by the retrieval tests (a module of its own: ``from conftest import ...``
picks up whichever ``conftest`` was imported first when several test folders run together).

The digits population of ``conftest.digits_population``, in this order:

- ``ON_TASK``: trained on digits (the query task): the model that should rank first;
- ``PARITY``: trained on ``label % 2``;
- ``HALVES``: trained on ``label >= 5``;
- ``UNTRAINED``: ``ON_TASK``'s initialization (its checkpoint 0).

The tiny hub of ``conftest.bare_hub`` / ``conftest.tiny_hub``: :data:`TINY_HUB_TEMPLATE` trained
on each of :data:`TINY_HUB_SOURCES`.
"""

ON_TASK, PARITY, HALVES, UNTRAINED = range(4)

#: A tiny retrieval hub: two MLP architectures (one and two hidden layers, so their weight
#: statistics differ in length) trained on three class subsets of digits, one run each.
TINY_HUB_TEMPLATE = {
    "name": "tiny-hub", "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [16], "activation": "relu"},
    "training": {"epochs": 6, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "checkpoints": [6]},
    "grid": {"hidden": [[16], [16, 8]], "seed": [0]},
}
TINY_HUB_SOURCES = ("digits:classes=0,1,2", "digits:classes=3,4,5", "digits:classes=6,7,8,9")
