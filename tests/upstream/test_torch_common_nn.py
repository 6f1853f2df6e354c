"""common_nn's criterion and functional-module tests (test_nn's drivers) for the four losses, torch vs ours.

``common_nn.criterion_tests`` entries run through common_nn's own ``CriterionTest``
(reference function, gradcheck, gradgradcheck), and the entries of
``common_nn.get_new_module_tests()`` that wrap one of the four functions run
through its ``NewModuleTest`` (reference function, non-contiguous inputs,
pickling, gradcheck, gradgradcheck, dtype casts).  Only the loss is swapped:
``torch.nn.<Module>`` / ``torch.nn.functional.<loss>`` for the duration of the test.
"""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _torch_harness as H  # noqa: E402
from _torch_harness import seeded  # noqa: E402,F401 - autouse fixture

CRITERIA = sorted(H.CRITERION_TESTS)
FUNCTIONAL = sorted(H.FUNCTIONAL_MODULE_TESTS)


def _run(test, impl, functions=(), modules=()):
    with H.swapped(impl, functions=functions, modules=modules):
        try:
            test(H.Driver())
        except H.ProbabilityRangeError as e:
            # By design (H.DIFFERENCES["probability range"]): the entry's targets are not
            # probabilities (e.g. torch.randn for BCEWithLogitsLoss), which ours rejects.
            # Check that, then run the entry's checks again on targets clamped to [0, 1].
            target = test._arg_cache.get("target")
            assert impl == "ours" and target is not None and bool(((target < 0) | (target > 1)).any()), e
            H.note("probability range")
            test._arg_cache["target"] = target.clamp(0, 1)
            test(H.Driver())


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", CRITERIA)
def test_criterion(name, impl):
    module, entry = H.CRITERION_TESTS[name]
    params = dict(entry)
    if "constructor" not in params:
        params["constructor"] = getattr(torch.nn, params.pop("module_name"))
    params.pop("decorator", None)
    test = H.CNN.CriterionTest(**params)
    if impl == "ours":
        # the constructor looks the class up in torch.nn at call time (getattr(nn, name)) or holds it
        ctor = params["constructor"]
        if ctor is H.module_class("torch", module):
            test.constructor = H.module_class("ours", module)
    _run(test, impl, modules=(module,))


@pytest.mark.parametrize("impl", H.IMPLS)
@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_module(name, impl):
    fn, entry = H.FUNCTIONAL_MODULE_TESTS[name]
    params = dict(entry)
    params.pop("decorator", None)
    test = H.CNN.NewModuleTest(**params)
    _run(test, impl, functions=(fn,))


def test_selection_is_what_it_claims():
    """The entries found are the four losses' (and nothing else slipped in)."""
    assert {m for m, _ in H.CRITERION_TESTS.values()} == {"BCELoss", "BCEWithLogitsLoss", "NLLLoss"}
    assert {f for f, _ in H.FUNCTIONAL_MODULE_TESTS.values()} == {"binary_cross_entropy",
                                                                    "binary_cross_entropy_with_logits", "nll_loss"}
    assert len(CRITERIA) == 9 and len(FUNCTIONAL) == 18
