"""scikit-learn's own metric tests for ``log_loss``, from the installed wheel, against ``crossentropy.sklearn``.

Two upstream modules are read, ``sklearn/metrics/tests/test_classification.py``
and ``test_common.py``; every test of theirs that exercises ``log_loss`` runs
twice (``impl`` = ``original`` / ``ours``):

* ``test_classification``: the tests whose body calls ``log_loss`` (the
  module-level name, swapped for ours);
* ``test_common``: the cases of its parametrised tests whose metric is
  ``log_loss`` or ``unnormalized_log_loss`` (the entries of its metric tables,
  and a metric passed as a parameter, swapped for ours), plus the one
  unparametrised test that loops over a table containing them.  Its array-API
  tests run on every namespace and device this machine has: NumPy,
  ``array_api_strict`` (its CPU device and its second device, ``device1``) and
  PyTorch on the CPU; CUDA, MPS, XPU, CuPy and dpnp need hardware or libraries
  CI does not have.  They need ``SCIPY_ARRAY_API=1`` before SciPy is imported,
  which the root ``conftest.py`` sets.
"""

from __future__ import annotations

import functools
import importlib
import os

import pytest

pytest.importorskip("sklearn")

import crossentropy.sklearn as cs  # noqa: E402
from tests.upstream._upstream import Swap, exercising, function_variants  # noqa: E402

classification = importlib.import_module("sklearn.metrics.tests.test_classification")
common = importlib.import_module("sklearn.metrics.tests.test_common")
ORIGINAL = classification.log_loss
NAMES = ("log_loss", "unnormalized_log_loss")


def _is_subject(v) -> bool:
    """A parameter value that stands for the metric under test."""
    if v is ORIGINAL or (isinstance(v, functools.partial) and v.func is ORIGINAL):
        return True
    return isinstance(v, str) and v in NAMES


# A call of log_loss (not d2_log_loss_score), or a loop over a metric table that holds it.
_PATTERN = r"(?<![\w.])log_loss\(|CONTINUOUS_MULTILABEL_METRICS"


def _ours(v):
    """The same parameter with our log_loss in place of scikit-learn's."""
    if v is ORIGINAL:
        return cs.log_loss
    if isinstance(v, functools.partial):
        return functools.partial(cs.log_loss, *v.args, **v.keywords)
    return v  # a name: looked up in the swapped tables at run time


# Namespaces and devices present on this machine (and in CI): see the module docstring.
AVAILABLE = {("numpy", None), ("array_api_strict", "CPU_DEVICE"), ("array_api_strict", "device1"),
             ("torch", "cpu")}


def _namespace_filter(args):
    return (args["array_namespace"], args["device_name"]) in AVAILABLE


def _mixed_filter(args):
    pairs = [args[k] for k in ("other_ns_and_device", "y_pred_ns_and_device")]
    return all((p.xp, p.device) in AVAILABLE for p in pairs)


FILTERS = {
    "array_namespace": _namespace_filter,
    "other_ns_and_device": _mixed_filter,
    "df_lib_name": lambda args: args["df_lib_name"] == "pandas",  # polars is not installed in CI
}


def _common_swaps():
    out = [Swap(common, "log_loss", cs.log_loss)]
    for table in (common.ALL_METRICS, common.CONTINUOUS_CLASSIFICATION_METRICS):
        out += [Swap(table, "log_loss", cs.log_loss),
                Swap(table, "unnormalized_log_loss", functools.partial(cs.log_loss, normalize=False))]
    return out


# Every upstream test that exercises log_loss: a log_loss case of its parametrisation, or a body that
# calls it (test_log_loss*, the d2_log_loss_score tests that take their expected values from log_loss)
# or loops over a metric table holding it.
CLASSIFICATION_TESTS = exercising(classification, _is_subject, _PATTERN)
COMMON_TESTS = exercising(common, _is_subject, _PATTERN)

SELECTED = {}
SELECTED.update(function_variants(
    globals(), classification, CLASSIFICATION_TESTS, [Swap(classification, "log_loss", cs.log_loss)],
    subject=_is_subject, substitute=_ours, param_filters=FILTERS))
SELECTED.update(function_variants(
    globals(), common, COMMON_TESTS, _common_swaps(), subject=_is_subject, substitute=_ours,
    param_filters=FILTERS))


def test_selection():
    # The automatic selection finds at least these (scikit-learn 1.9), and the array-API tests
    # kept both array_api_strict devices and PyTorch on the CPU.
    assert {"test_log_loss", "test_log_loss_eps", "test_log_loss_not_probabilities_warning",
            "test_log_loss_perfect_predictions", "test_log_loss_pandas_input", "test_log_loss_warnings",
            "test_log_loss_y_pred_deprecation"} <= set(CLASSIFICATION_TESTS)
    assert {"test_array_api_compliance", "test_mixed_array_api_namespace_input_compliance",
            "test_sample_order_invariance", "test_binary_sample_weight_invariance",
            "test_normalize_option_multiclass_classification"} <= set(COMMON_TESTS)
    assert SELECTED["test_array_api_compliance"] == 3 * 5  # 3 checkers × (numpy, strict ×2, torch cpu ×2)
    assert os.environ.get("SCIPY_ARRAY_API") == "1"


# ---------------------------------------------------------------------------------------------
# the harness itself (tests/upstream/_upstream.py)
# ---------------------------------------------------------------------------------------------

def test_harness_swaps_ours_in_and_restores():
    from tests.upstream._upstream import swapped

    swaps = _common_swaps()
    with swapped(swaps, "ours"):
        assert common.log_loss is cs.log_loss and common.ALL_METRICS["log_loss"] is cs.log_loss
        assert common.ALL_METRICS["unnormalized_log_loss"].func is cs.log_loss
    assert common.log_loss is ORIGINAL and common.ALL_METRICS["unnormalized_log_loss"].func is ORIGINAL
    with pytest.raises(KeyError), swapped(swaps, "ours"):
        raise KeyError
    assert common.ALL_METRICS["log_loss"] is ORIGINAL


def test_harness_catches_a_wrong_implementation():
    # The same wrappers around a log_loss that is off by 1e-3: the upstream tests fail.
    def off(*args, **kwargs):
        return cs.log_loss(*args, **kwargs) + 1e-3

    made = {}
    function_variants(made, classification, ["test_log_loss"], [Swap(classification, "log_loss", off)],
                      subject=_is_subject, substitute=lambda v: off)
    made["test_log_loss"](impl="original")
    with pytest.raises(AssertionError):
        made["test_log_loss"](impl="ours")


def test_harness_by_design_difference_must_fail_as_stated():
    from tests.upstream._upstream import Difference, run_expecting

    diff = Difference("reason", ValueError, "must have")
    with pytest.raises(pytest.fail.Exception, match="passed"):
        run_expecting(diff, lambda: None)
    with pytest.raises(AssertionError, match="expected a failure matching"):
        run_expecting(diff, lambda: (_ for _ in ()).throw(ValueError("other text")))
    with pytest.raises(pytest.xfail.Exception):
        run_expecting(diff, lambda: (_ for _ in ()).throw(ValueError("must have the same shape")))
    with pytest.raises(TypeError):  # another exception type propagates as a failure
        run_expecting(diff, lambda: (_ for _ in ()).throw(TypeError("must have")))
