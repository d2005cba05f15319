"""Constants shared by the retrieval tests (a module of its own: ``from conftest import ...``
picks up whichever ``conftest`` was imported first when several test folders run together).

The digits population of ``conftest.digits_population``, in this order:

- ``ON_TASK``: trained on digits (the query task): the model that should rank first;
- ``PARITY``: trained on ``label % 2``;
- ``HALVES``: trained on ``label >= 5``;
- ``UNTRAINED``: ``ON_TASK``'s initialization (its checkpoint 0).
"""

ON_TASK, PARITY, HALVES, UNTRAINED = range(4)
