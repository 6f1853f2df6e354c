"""Compiled CPU kernels (a C extension built by ``pip install``), and their configuration.

``_ckernels`` is built from the C sources beside this file (``ck_*.c``,
``ck_*.h``) when the package is installed.  If it is missing (no C compiler at
install time, or a source checkout that was never built), :func:`get` returns
``None`` and every loss runs the reference implementation: the same results,
slower.  ``python setup.py build_ext --inplace`` builds it in a checkout.

Configuration (environment variables, read at import; or :func:`configure`):

``CROSSENTROPY_KERNELS=0``
    disable the kernels (the reference path runs everywhere).
``CROSSENTROPY_NUM_THREADS=n``
    threads used by the kernels (default: the cores this process may run on).
``CROSSENTROPY_ROW_BLOCK=b``
    rows per parallel task for cross-entropy (default: about four tasks per thread).

Neither the thread count nor the row block changes a single bit of any result
(see docs/performance.md, "Determinism").  The fused chunk kernels that the
fused linear cross-entropy and the vocabulary-parallel loss build on are in
:mod:`crossentropy._kernels._chunk`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["available", "configure", "config", "get", "info", "warmup"]


def _env_int(name):
    v = os.environ.get(name, "").strip()
    return int(v) if v else None


_cfg = {
    "enabled": os.environ.get("CROSSENTROPY_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off"),
    "threads": _env_int("CROSSENTROPY_NUM_THREADS"),
    "row_block": _env_int("CROSSENTROPY_ROW_BLOCK"),
}

_ck: Any  # the C extension module, or None
try:
    # a C extension: no source or stub for mypy to read
    from . import _ckernels as _ck  # type: ignore[attr-defined, no-redef]
except ImportError:  # not built: the reference implementation runs
    _ck = None


def _apply():
    if _ck is not None:
        _ck.configure(bool(_cfg["enabled"]), int(_cfg["threads"] or 0), int(_cfg["row_block"] or 0))


_apply()


def available() -> bool:
    """Whether the compiled kernels are installed (whether or not they are enabled)."""
    return _ck is not None


def get():
    """The kernel module when it is installed and enabled, else ``None``."""
    return _ck if (_ck is not None and _cfg["enabled"]) else None


def configure(*, enabled=None, threads=None, row_block=None):
    """Set kernel options; ``None`` leaves an option unchanged.  Returns the previous config.

    ``threads=0`` / ``row_block=0`` restore the defaults.
    """
    prev = dict(_cfg)
    if enabled is not None:
        _cfg["enabled"] = bool(enabled)
    if threads is not None:
        _cfg["threads"] = int(threads) or None
    if row_block is not None:
        _cfg["row_block"] = int(row_block) or None
    _apply()
    return prev


def config() -> dict:
    """The current options (``enabled``, ``threads``, ``row_block``)."""
    return dict(_cfg)


def info() -> dict:
    """What runs: instruction set chosen for this CPU, threads in use, workers started."""
    if _ck is None:
        return {"available": False}
    return {"available": True, **_ck.config()}


def warmup() -> bool:
    """Nothing to compile any more (the kernels are built at install time).

    Kept for callers of the former numba kernels; returns :func:`available`.
    """
    return available()
