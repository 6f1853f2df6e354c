"""Shared test configuration.

With ``CROSSENTROPY_REQUIRE_ALL=1`` (set by ``.ci/run``) every skipped test is
reported as a failure: CI installs every reference framework, so a parity test
that skips there means a parity check silently did not run.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

REQUIRE_ALL = os.environ.get("CROSSENTROPY_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.longrepr = f"skipped under CROSSENTROPY_REQUIRE_ALL=1 (a parity check did not run): {reason}"


def tol(dtype, factor: float = 64.0) -> float:
    """Absolute/relative tolerance derived from the dtype's machine epsilon."""
    return factor * float(np.finfo(np.dtype(dtype)).eps)


_SHARED: dict = {}


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """``shared_run(name, compute)``: ``compute()`` (a JSON-able result) once per test run, shared by
    the xdist workers through a file lock, and cached in this process.  For expensive subprocess
    groups (distributed worlds, the Triton interpreter) that several tests read."""
    from filelock import FileLock

    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent / f"shared-{uid}" if uid else tmp_path_factory.getbasetemp()
    root.mkdir(parents=True, exist_ok=True)

    def run(name, compute):
        if name in _SHARED:
            return _SHARED[name]
        path = root / f"{name}.json"
        with FileLock(str(path) + ".lock"):
            if path.exists():
                res = json.loads(path.read_text())
            else:
                res = compute()
                path.write_text(json.dumps(res))
        _SHARED[name] = res
        return res

    return run
