"""The frameworks' own test suites, run from their installed wheels against our drop-ins.

Each ``test_<framework>_*.py`` module here imports its framework itself (so
collecting this directory imports nothing for the others) and builds its
items with a helper module of this directory (``_upstream.py`` for Keras,
optax and scikit-learn).  Nothing here is autouse.
"""

import pytest

# Plain ``assert`` in the helper reports its operands, as in a test module.
pytest.register_assert_rewrite("tests.upstream._upstream")
