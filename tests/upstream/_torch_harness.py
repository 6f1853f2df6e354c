"""PyTorch's own tests for the four losses, read from the installed wheel, run on torch's and on ours.

The wheel ships the test *data* (``torch.testing._internal``): the OpInfos of
``common_methods_invocations.op_db``, the ModuleInfos of
``common_modules.module_db`` and the criterion / module test entries of
``common_nn``, plus some of the drivers' helpers (``TestGradients._check_helper``,
``CriterionTest``, ``NewModuleTest``).  The ``test_*.py`` drivers are not shipped;
the checks they run on these entries are re-stated here, calling the shipped
helpers wherever one exists.  Nothing is copied from PyTorch.

Every check runs twice, ``impl='torch'`` and ``impl='ours'``, with only the loss
under test swapped: ours is called in place of ``torch.nn.functional.<loss>`` (or
of the ``torch.nn`` class), by monkeypatching ``torch.nn.functional`` /
``torch.nn`` for the duration of the check where the upstream code looks the
loss up there.  A harness artefact therefore cannot pass as ours.

``python tests/upstream/_torch_harness.py`` prints, per suite, the tests
selected and how many pass with the original and with ours.
"""

from __future__ import annotations

import contextlib
import copy
import re
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import crossentropy.torch as ct
import crossentropy.torch.functional as cf
from crossentropy._errors import CrossEntropyError, ProbabilityRangeError

warnings.filterwarnings("ignore", message=".*Please use `torch.vmap`.*")

LOSSES = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits")
MODULES = ("CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss")
IMPLS = ("torch", "ours")

_ORIGINAL_F = {n: getattr(F, n) for n in LOSSES}
_ORIGINAL_M = {n: getattr(torch.nn, n) for n in MODULES}

# By-design differences (also in docs/adapters.md): where ours deliberately differs
# from PyTorch on an upstream check, the check asserts *our* documented behaviour.
DIFFERENCES = {
    "error class": "errors are the library's classes (CrossEntropyError subclasses of ValueError/TypeError) "
                   "with the library's messages, where PyTorch raises RuntimeError/ValueError with its own",
    "probability range": "probability targets must lie in [0, 1] (ProbabilityRangeError); PyTorch computes "
                         "with any value.  A gradcheck w.r.t. a target within its step (1e-6) of 0 or 1 "
                         "therefore stops at the step outside; the other arguments are checked",
    "half precision rounding": "float16/bfloat16 are computed in float32 and rounded once; PyTorch rounds "
                               "intermediate results in the half type, so values differ by up to a few "
                               "half-precision ulps",
}


NOTED: list = []  # by-design differences met by the running test (read by report())


def note(kind: str) -> None:
    if kind not in DIFFERENCES:
        raise KeyError(kind)
    NOTED.append(kind)


def function(impl: str, name: str):
    return _ORIGINAL_F[name] if impl == "torch" else getattr(cf, name)


def module_class(impl: str, name: str):
    return _ORIGINAL_M[name] if impl == "torch" else getattr(ct, name)


@contextlib.contextmanager
def swapped(impl: str, functions=(), modules=()):
    """``torch.nn.functional.<f>`` / ``torch.nn.<M>`` replaced by ours inside the block (impl='ours')."""
    saved = []
    try:
        if impl == "ours":
            for n in functions:
                saved.append((F, n, getattr(F, n)))
                setattr(F, n, getattr(cf, n))
            for n in modules:
                saved.append((torch.nn, n, getattr(torch.nn, n)))
                setattr(torch.nn, n, getattr(ct, n))
        yield
    finally:
        for mod, n, v in reversed(saved):
            setattr(mod, n, v)


def assert_not_less_accurate(ours, theirs, exact, dtype):
    """Half precision: ours is never further from the exact value than PyTorch's result plus one rounding."""
    exact = exact.double()
    err_ours = (ours.double() - exact).abs()
    err_theirs = (theirs.double() - exact).abs()
    bound = err_theirs + torch.finfo(dtype).eps * exact.abs() + torch.finfo(dtype).tiny
    ok = (err_ours <= bound) | (torch.isnan(ours) & torch.isnan(theirs)) | (ours.double() == exact)
    assert bool(ok.all()), f"ours {ours} vs torch {theirs}, exact {exact}"


def stepped_outside(error, args, positions, eps=1e-6):
    """Whether a ProbabilityRangeError came from a finite-difference step: some
    differentiated target lies within ``eps`` of 0 or 1."""
    targets = [args[i] for i in positions if i > 0]
    near = any(bool(((t < eps) | (t > 1 - eps)).any()) for t in targets)
    return isinstance(error, ProbabilityRangeError) and near


def expect_error(impl, call, error_type, error_regex):
    """Upstream error check: PyTorch raises ``error_type`` matching ``error_regex``;
    ours must raise too, either exactly that or one of the library's errors."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the class is what is being checked
        if isinstance(e, error_type) and re.search(error_regex, str(e)):
            return "same"
        if impl == "ours" and isinstance(e, CrossEntropyError) and str(e):
            note("error class")
            return "error class"
        raise AssertionError(f"expected {error_type.__name__} matching {error_regex!r}; got "
                             f"{type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {error_type.__name__} matching {error_regex!r}; nothing was raised")


# ---------------------------------------------------------------------------------------------
# upstream data
# ---------------------------------------------------------------------------------------------

def _quiet_import():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal import common_methods_invocations, common_modules, common_nn, common_utils
    return common_methods_invocations, common_modules, common_nn, common_utils


CMI, CM, CNN, CU = _quiet_import()

OPINFOS = {op.name.split(".")[-1]: op for op in CMI.op_db
           if op.name.split(".")[-1] in LOSSES and op.name.startswith("nn.functional.") and op.variant_test_name == ""}
MODULEINFOS = {mi.module_cls.__name__: mi for mi in CM.module_db if mi.module_cls.__name__ in MODULES}


def _criterion_entries():
    """common_nn.criterion_tests entries for our four modules (test name -> entry)."""
    out = {}
    for entry in CNN.criterion_tests:
        name = entry.get("fullname") or entry.get("module_name", "")
        mod = next((m for m in MODULES if name == m or name.startswith(m + "_")), None)
        if mod is not None:
            out[name] = (mod, entry)
    return out


def _functional_module_entries():
    """common_nn.get_new_module_tests() entries that wrap one of our four functions."""
    out = {}
    for entry in CNN.get_new_module_tests():
        name = entry.get("fullname") or entry.get("module_name", "")
        mod = next((m for m in MODULES if name.startswith(m + "_") or name.startswith(m[:-4] + "Loss2d_")
                    or name.startswith(m[:-4] + "LossNd_")), None)
        if mod is None:
            continue
        fn = {"CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss", "BCELoss": "binary_cross_entropy",
              "BCEWithLogitsLoss": "binary_cross_entropy_with_logits"}[mod]
        out[name] = (fn, entry)
    return out


CRITERION_TESTS = _criterion_entries()
FUNCTIONAL_MODULE_TESTS = _functional_module_entries()


def with_samples(info, keep):
    """A copy of an OpInfo whose sample inputs are those for which ``keep(sample)`` holds."""
    sub = copy.copy(info)
    original = info.sample_inputs

    def sample_inputs(device, dtype, requires_grad=False, **kwargs):
        return (s for s in original(device, dtype, requires_grad=requires_grad, **kwargs) if keep(s))

    sub.sample_inputs = sample_inputs
    return sub


def tolerance_override(info, test_name, dtype, device="cpu"):
    """(atol, rtol) from an upstream ``toleranceOverride`` decorator for this test, or None."""
    for d in getattr(info, "decorators", ()):
        if getattr(d, "test_name", None) not in (None, test_name):
            continue
        if getattr(d, "device_type", None) not in (None, device):
            continue
        if d.dtypes is not None and dtype not in d.dtypes:
            continue
        for dec in d.decorators:
            tol = getattr(dec, "d", None)
            if isinstance(tol, dict) and dtype in tol:
                return tol[dtype].atol, tol[dtype].rtol
    return None


# ---------------------------------------------------------------------------------------------
# the drivers' glue (test_nn.TestNN's, for common_nn's CriterionTest / NewModuleTest)
# ---------------------------------------------------------------------------------------------

class Driver(CNN.NNTestCase):
    """The four methods the common_nn test classes expect of the test case."""

    def runTest(self):  # unittest wants a method to name
        pass

    def _forward(self, module, input):
        with CU.freeze_rng_state():
            return module(*input) if isinstance(input, tuple) else module(input)

    def _backward(self, module, input, output, grad_output, create_graph=False):
        output.backward(grad_output, retain_graph=True, create_graph=create_graph)
        if isinstance(input, tuple):
            return tuple(i.grad.data if i.grad is not None else None for i in input)
        return input.grad.data if input.grad is not None else None

    def _forward_criterion(self, criterion, input, target, extra_args=None):
        extra_args = () if extra_args is None else extra_args
        if isinstance(input, tuple):
            return criterion(*(input + (target,) + extra_args))
        return criterion(input, target, *extra_args)

    def _backward_criterion(self, criterion, input, output, target, gradOutput=None, extra_args=None):
        inputs = input if isinstance(input, tuple) else (input,)
        for i in inputs:
            if i.grad is not None:
                i.grad.zero_()
        output.backward(gradOutput if gradOutput is not None else torch.ones_like(output), retain_graph=True)
        return tuple(i.grad.data for i in inputs) if isinstance(input, tuple) else input.grad.data

    def _zero_grad_parameters(self, module):
        for p in module.parameters():
            if p.grad is not None:
                with torch.no_grad():
                    p.grad.zero_()
                p.grad.detach_()

    def _get_parameters(self, module):
        params, d_params = [], []
        for p in module.parameters():
            params.append(p)
            d_params.append(p.grad)
        return params, d_params


@pytest.fixture(autouse=True)
def seeded():
    """PyTorch's TestCase seeds every test with common_utils.SEED; so do the tests importing this."""
    torch.manual_seed(CU.SEED)


def gradients_driver():
    return CU.TestGradients()


# ---------------------------------------------------------------------------------------------
# report: run the suites and count
# ---------------------------------------------------------------------------------------------

SUITES = {
    "OpInfo (common_methods_invocations.op_db)": "tests/upstream/test_torch_opinfo.py",
    "ModuleInfo (common_modules.module_db)": "tests/upstream/test_torch_modules.py",
    "common_nn criterion / module tests": "tests/upstream/test_torch_common_nn.py",
}


def report():  # pragma: no cover - a command, run by hand for docs/adapters.md
    """Run the three suites; print per suite: selected, passing with torch / ours, and the differences met."""
    import pytest

    class Collect:
        def __init__(self):
            self.results = []

        def pytest_runtest_setup(self, item):
            harness = sys.modules.get("_torch_harness")
            if harness is not None:
                harness.NOTED.clear()

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            rep = outcome.get_result()
            if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
                harness = sys.modules.get("_torch_harness")
                noted = set(harness.NOTED) if harness is not None else set()
                params = getattr(item, "callspec", None)
                self.results.append((params.params.get("impl") if params else None, rep.outcome, noted))

    lines = ["| suite | tests selected (per implementation) | pass with torch | pass with ours | "
             "of which by-design differences |", "|---|---|---|---|---|"]
    for suite, path in SUITES.items():
        c = Collect()
        pytest.main(["-q", "-p", "no:xdist", "-p", "no:cacheprovider", path], plugins=[c])
        per = {impl: [(o, n) for i, o, n in c.results if i == impl] for impl in IMPLS}
        diffs = {}
        for o, n in per["ours"]:
            for kind in n:
                diffs[kind] = diffs.get(kind, 0) + 1
        listed = "; ".join(f"{k}: {v}" for k, v in sorted(diffs.items())) or "none"
        lines.append(f"| {suite} | {len(per['torch'])} | {sum(o == 'passed' for o, _ in per['torch'])} | "
                     f"{sum(o == 'passed' for o, _ in per['ours'])} | {listed} |")
    print("\n".join(lines))
    print()
    for kind, reason in DIFFERENCES.items():
        print(f"* **{kind}**: {reason}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(report())
