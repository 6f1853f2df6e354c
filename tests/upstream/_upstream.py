"""Run a framework's own tests, read from its installed wheel, against our drop-in.

Nothing upstream is copied into this repository.  A test module here imports
the framework's test module (``keras.src.losses.losses_test``, ...) and
re-exports its tests twice, once per implementation:

* ``original`` — the framework's own symbol (set back onto itself through the
  same swap machinery, so a harness artefact shows up on both sides);
* ``ours`` — the one symbol under test replaced by crossentropy's drop-in
  (``Swap``: a module attribute or a dict entry the upstream test reads).

Two shapes of upstream test are supported:

* ``unittest`` classes (Keras, optax/absl): :func:`unittest_variants` defines
  ``<Class>_original`` and ``<Class>_ours`` subclasses whose ``setUp`` swaps
  the symbol in (and a cleanup swaps it back); every ``test*`` method is
  inherited, so pytest reports one item per upstream test × implementation.
* plain pytest functions (scikit-learn): :func:`function_variants` defines a
  wrapper per upstream function, parametrised by ``impl`` on top of the
  upstream parametrisation (filtered to the cases that exercise the symbol).

A by-design difference is a :class:`Difference`: on ``ours`` the upstream test
must fail in the stated way (exception type and message), which reports as
``xfail``; if it passes, or fails differently, the test fails, so the list
cannot go stale silently.  Each difference is also listed in
``docs/adapters.md``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import unittest
from typing import Any, Callable, NamedTuple

import pytest

IMPLS = ("original", "ours")


class Swap(NamedTuple):
    """Replace ``owner.name`` (or ``owner[name]`` for a dict) by ``ours``."""

    owner: Any
    name: str
    ours: Any


class Difference(NamedTuple):
    """A by-design difference: on ``ours`` the upstream test fails with ``raises`` matching ``match``."""

    reason: str
    raises: type = BaseException
    match: str = ""


def _get(owner, name):
    return owner[name] if isinstance(owner, dict) else getattr(owner, name)


def _set(owner, name, value):
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


@contextlib.contextmanager
def swapped(swaps, impl):
    """Within the block, each swap's target holds ours (``impl='ours'``) or its original value."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}")
    saved = [(s, _get(s.owner, s.name)) for s in swaps]
    try:
        for s, original in saved:
            _set(s.owner, s.name, s.ours if impl == "ours" else original)
        yield
    finally:
        for s, original in reversed(saved):
            _set(s.owner, s.name, original)


def run_expecting(difference: Difference, call: Callable[[], Any]):
    """Run ``call``; it must fail as ``difference`` says (→ xfail), else the test fails."""
    try:
        call()
    except difference.raises as exc:  # noqa: PERF203 - the failure is the expected outcome
        if difference.match and not re.search(difference.match, str(exc)):
            raise AssertionError(
                f"by-design difference expected a failure matching {difference.match!r}; got "
                f"{type(exc).__name__}: {exc}") from exc
        pytest.xfail(f"by design: {difference.reason}")
    pytest.fail(f"listed as a by-design difference ({difference.reason}) but the upstream test passed: "
                "remove it from the list", pytrace=False)


def upstream_skip_reason(fn) -> str | None:
    """The reason when upstream marks ``fn`` ``skip`` / ``skipif(True)`` here (not this backend / platform)."""
    for mark in upstream_marks(fn):
        if mark.name == "skip":
            return mark.kwargs.get("reason", "skip")
        if mark.name == "skipif" and mark.args and mark.args[0] is True:
            return mark.kwargs.get("reason", "skipif")
    return None


# ---------------------------------------------------------------------------------------------
# unittest.TestCase classes (Keras, optax)
# ---------------------------------------------------------------------------------------------

def unittest_variants(namespace: dict, module, plan: dict[str, list[Swap]], *,
                      differences: dict[str, Difference] | None = None,
                      exclude: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Define ``<Class>_<impl>`` for each upstream class of ``plan`` in ``namespace``.

    ``plan`` maps an upstream class name to the swaps its tests need.
    ``differences`` maps ``"Class.test_method"`` to a :class:`Difference`
    (applied to ``ours`` only); ``exclude`` maps ``"Class.test_method"`` to the
    reason it is not selected.  Methods upstream skips in this environment are
    not selected either.  Returns ``{class: [selected methods]}``.
    """
    differences = dict(differences or {})
    exclude = dict(exclude or {})
    selected = {}
    loader = unittest.TestLoader()
    for cls_name, swaps in plan.items():
        base = getattr(module, cls_name)
        names = loader.getTestCaseNames(base)
        dropped = {n for n in names
                   if f"{cls_name}.{n}" in exclude or upstream_skip_reason(getattr(base, n)) is not None}
        selected[cls_name] = [n for n in names if n not in dropped]
        for impl in IMPLS:
            attrs = {"__module__": namespace["__name__"], "__qualname__": f"{cls_name}_{impl}",
                     "__doc__": f"{module.__name__}.{cls_name} with impl={impl}",
                     "setUp": _swapping_setup(base, swaps, impl)}
            for n in dropped:
                attrs[n] = None  # not callable: unittest's loader (and so pytest) skips the name
            if impl == "ours":
                for n in selected[cls_name]:
                    diff = differences.pop(f"{cls_name}.{n}", None)
                    if diff is not None:
                        attrs[n] = _expecting(getattr(base, n), diff)
            attrs["test_harness_swaps_this_impl"] = _swap_check(swaps, impl)
            namespace[f"{cls_name}_{impl}"] = type(f"{cls_name}_{impl}", (base,), attrs)
    if differences:
        raise LookupError(f"by-design differences name no selected upstream test: {sorted(differences)}")
    return selected


def _swapping_setup(base, swaps, impl):
    def setUp(self):
        ctx = swapped(swaps, impl)
        ctx.__enter__()
        # Registered before the upstream setUp so the symbol is restored even if it fails.
        self.addCleanup(ctx.__exit__, None, None, None)
        base.setUp(self)

    return setUp


def _expecting(method, difference):
    @functools.wraps(method)
    def test(self):
        run_expecting(difference, lambda: method(self))

    return test


def _swap_check(swaps, impl):
    def test_harness_swaps_this_impl(self):
        # Not an upstream test: proves the swap is in place during the upstream tests of this class.
        for s in swaps:
            current = _get(s.owner, s.name)
            if impl == "ours":
                assert current is s.ours, f"{s.name} is not ours during the test"
            else:
                assert current is not s.ours, f"{s.name} is ours in the original variant"

    return test_harness_swaps_this_impl


# ---------------------------------------------------------------------------------------------
# plain pytest functions (scikit-learn)
# ---------------------------------------------------------------------------------------------

def _is_paramset(v):
    return hasattr(v, "values") and hasattr(v, "marks") and hasattr(v, "id")


def _argnames(mark):
    names = mark.args[0] if mark.args else mark.kwargs["argnames"]
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


_MARKS: dict = {}


def upstream_marks(fn) -> list:
    """``fn``'s pytest marks with every ``parametrize`` argvalues materialised as a list.

    Upstream passes generators (e.g. ``yield_namespace_device_dtype_combinations()``), which
    can be read once only; the list is cached per function and reused by every reader here.
    """
    if fn not in _MARKS:
        marks = []
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize":
                names = mark.args[0] if mark.args else mark.kwargs["argnames"]
                values = list(mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"])
                kwargs = {k: v for k, v in mark.kwargs.items() if k not in ("argnames", "argvalues")}
                mark = pytest.mark.parametrize(names, values, **kwargs).mark
            marks.append(mark)
        _MARKS[fn] = marks
    return _MARKS[fn]


def _arguments(mark) -> list[dict]:
    """One ``{argname: value}`` per argvalues entry of a materialised ``parametrize`` mark."""
    names = _argnames(mark)
    out = []
    for v in mark.args[1]:
        vals = tuple(v.values) if _is_paramset(v) else (v if len(names) > 1 else (v,))
        out.append(dict(zip(names, vals)))
    return out


def exercising(module, subject: Callable[[Any], bool], pattern: str) -> list[str]:
    """The module's test functions that exercise the subject: a parametrised case whose value is
    the subject, or a body that names it (``pattern``, e.g. a call, or a loop over a table of it)."""
    out = []
    for name, fn in vars(module).items():
        if not (name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__):
            continue
        by_param = any(subject(v) for m in upstream_marks(fn) if m.name == "parametrize"
                       for args in _arguments(m) for v in args.values())
        if by_param or re.search(pattern, inspect.getsource(fn)):
            out.append(name)
    return out


def function_variants(namespace: dict, module, names: list[str], swaps: list[Swap], *,
                      subject: Callable[[Any], bool], substitute: Callable[[Any], Any],
                      param_filters: dict[str, Callable[[dict], bool]] | None = None,
                      differences: dict[str, tuple[Callable[[dict], bool], Difference]] | None = None,
                      ) -> dict[str, int]:
    """Define a wrapper ``namespace[name]`` for each upstream test function of ``names``.

    The wrapper takes ``impl`` first (parametrised over :data:`IMPLS`), then the
    upstream function's own arguments (parameters and fixtures).  Each upstream
    ``parametrize`` mark is kept, restricted to the cases whose value is the
    subject when any of its cases is (e.g. the metric is ``log_loss``), and to
    the cases ``param_filters[argname](arguments)`` accepts (e.g. the array
    namespaces and devices this machine has).  Under ``ours`` every argument
    value that is the subject becomes ``substitute(value)`` and ``swaps`` are
    applied.  ``differences`` maps a function name to ``(predicate on the
    arguments, Difference)``.  Returns ``{name: upstream cases selected}``.
    """
    param_filters = param_filters or {}
    differences = dict(differences or {})
    counts = {}
    for name in names:
        fn = getattr(module, name)
        marks, n_cases = [], 1
        for mark in upstream_marks(fn):
            if mark.name != "parametrize":
                marks.append(mark)
                continue
            cases = _arguments(mark)
            about_subject = any(subject(v) for args in cases for v in args.values())
            kept = [i for i, args in enumerate(cases)
                    if (not about_subject or any(subject(v) for v in args.values()))
                    and all(f(args) for a, f in param_filters.items() if a in args)]
            kwargs = {k: v for k, v in mark.kwargs.items() if k != "ids"}
            ids = mark.kwargs.get("ids")
            if isinstance(ids, (list, tuple)):
                kwargs["ids"] = [ids[i] for i in kept]
            elif ids is not None:
                kwargs["ids"] = ids
            marks.append(pytest.mark.parametrize(mark.args[0], [mark.args[1][i] for i in kept], **kwargs).mark)
            n_cases *= len(kept)
        if n_cases == 0:
            raise LookupError(f"{module.__name__}.{name}: no case left after selection")
        namespace[name] = _impl_wrapper(fn, marks, swaps, substitute, subject, differences.pop(name, None))
        counts[name] = n_cases
    if differences:
        raise LookupError(f"by-design differences name no selected upstream test: {sorted(differences)}")
    return counts


def _impl_wrapper(fn, marks, swaps, substitute, subject, difference):
    sig = inspect.signature(fn)
    if "impl" in sig.parameters:
        raise NameError(f"{fn.__name__} already has an argument named 'impl'")

    def wrapper(impl, **kwargs):
        if impl == "ours":
            kwargs = {k: substitute(v) if subject(v) else v for k, v in kwargs.items()}

        def call():
            with swapped(swaps, impl):
                fn(**kwargs)

        if impl == "ours" and difference is not None and difference[0](kwargs):
            run_expecting(difference[1], call)
        else:
            call()

    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__signature__ = sig.replace(
        parameters=[inspect.Parameter("impl", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()])
    wrapper.pytestmark = [*marks, pytest.mark.parametrize("impl", IMPLS).mark]
    return wrapper
