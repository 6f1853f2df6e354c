"""Helpers for the fast-kernel tests: the reference result is the same call
with the kernels disabled (``crossentropy._kernels.configure(enabled=False)``)."""

from __future__ import annotations

import pytest

from crossentropy import _kernels


@pytest.fixture
def kernels_config():
    """Restore the kernel configuration after a test that changes it."""
    prev = _kernels.config()
    yield _kernels
    _kernels.configure(enabled=prev["enabled"], threads=prev["threads"] or 0, row_block=prev["row_block"] or 0)


def reference(fn):
    """Run ``fn()`` on the reference path."""
    prev = _kernels.config()["enabled"]
    _kernels.configure(enabled=False)
    try:
        return fn()
    finally:
        _kernels.configure(enabled=prev)
