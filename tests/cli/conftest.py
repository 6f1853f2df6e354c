"""Fixtures for the end-to-end tests of the ``crossentropy`` command."""

from __future__ import annotations

import os
import sys

import pytest

# pytest runs with --import-mode=importlib, which does not put test folders on
# sys.path; the helper module sits next to the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clihelpers import run_cli  # noqa: E402


@pytest.fixture
def cli(tmp_path):
    """``cli(*args)`` runs ``python -m crossentropy *args`` in a temporary folder."""
    def run(*args, **kw):
        kw.setdefault("cwd", tmp_path)
        return run_cli(args, **kw)
    return run
