"""Optional fast CPU kernels (numba), and their runtime configuration.

The kernels live in :mod:`._ce` and :mod:`._bce` and are imported lazily on
first use, so ``import crossentropy`` never imports numba.  Without numba (the
``fast`` extra not installed), :func:`get` returns ``None`` and every loss runs
the reference implementation.

Configuration (environment variables, read at import; or :func:`configure`):

``CROSSENTROPY_KERNELS=0``
    disable the kernels (the reference path runs everywhere).
``CROSSENTROPY_NUM_THREADS=n``
    threads used by the kernels (default: numba's default, i.e. all cores).
``CROSSENTROPY_ROW_BLOCK=b``
    rows per parallel task for cross-entropy (default: about four tasks per thread).

Neither the thread count nor the row block changes a single bit of any result
(see docs/performance.md, "Determinism").
"""

from __future__ import annotations

import os

__all__ = ["available", "configure", "config", "get", "warmup"]

SMALL_WORK = 1 << 15  # elements below which the serial kernel is used (no thread wake-up)

_cfg = {
    "enabled": os.environ.get("CROSSENTROPY_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off"),
    "threads": int(os.environ["CROSSENTROPY_NUM_THREADS"]) if os.environ.get("CROSSENTROPY_NUM_THREADS") else None,
    "row_block": int(os.environ["CROSSENTROPY_ROW_BLOCK"]) if os.environ.get("CROSSENTROPY_ROW_BLOCK") else None,
}
_mods = None  # (numba, _ce, _bce) once imported; False if numba is missing
_applied_threads = None


def available() -> bool:
    """Whether numba is importable (the kernels can run)."""
    return get(force=True) is not None


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
    return prev


def config() -> dict:
    """The current options (``enabled``, ``threads``, ``row_block``)."""
    return dict(_cfg)


def get(force=False):
    """``(numba, _ce, _bce)`` when the kernels are enabled and numba is installed, else ``None``."""
    global _mods
    if not (_cfg["enabled"] or force):
        return None
    if _mods is None:
        try:
            import numba

            from . import _bce, _ce
        except ImportError:
            _mods = False
        else:
            _mods = (numba, _ce, _bce)
    return _mods or None


def threads(numba) -> int:
    """Apply the configured thread count to numba; return the count in use."""
    global _applied_threads
    want = _cfg["threads"]
    if want is None:
        want = numba.config.NUMBA_NUM_THREADS
    want = max(1, min(int(want), numba.config.NUMBA_NUM_THREADS))
    if want != _applied_threads:
        numba.set_num_threads(want)
        _applied_threads = want
    return want


def row_block(n_rows: int, n_threads: int) -> int:
    b = _cfg["row_block"]
    if b:
        return max(1, int(b))
    return max(1, -(-n_rows // (4 * n_threads)))


def warmup() -> bool:
    """Compile (or load from numba's on-disk cache) every kernel variant now.

    The first call of each variant otherwise pays numba's compile time (tens of
    seconds in all, once per machine thanks to ``cache=True``) inside whatever
    runs first, e.g. a test with a deadline.  Returns False without numba.
    """
    if get() is None:
        return False
    import numpy as np

    import crossentropy as ce

    for dt in (np.float32, np.float64):
        for n, c in ((2, 3), (64, SMALL_WORK // 64 + 1)):  # serial and parallel kernels
            x = np.zeros((n, c), dt)
            y = np.zeros(n, np.int64)
            p = np.full((n, c), 1.0 / c, dt)
            ce.value_and_grad(ce.cross_entropy, x, y)
            ce.value_and_grad(ce.cross_entropy, x, p)
            ce.binary_cross_entropy_with_logits(x, p)
            ce.value_and_grad(ce.binary_cross_entropy_with_logits, x, p)
    return True
