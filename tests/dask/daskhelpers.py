"""Helpers shared by the Dask tests (and the CLI tests' own: the in-process runner, the data makers)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cli"))

from clihelpers import make_multiclass, run_inproc, write_csv  # noqa: E402,F401

MC_PARTS = (1, 1499, 3000, 500, 2000)  # uneven, with a one-row part
B_PARTS = (3500, 3500)  # the second model of a comparison, cut elsewhere
