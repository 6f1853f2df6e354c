"""Build script for the compiled CPU kernels (``crossentropy._kernels._ckernels``).

All metadata lives in ``pyproject.toml``; this file only declares the C
extension.  The extension is optional: without a C compiler (or NumPy's
headers) the build prints a warning, the package installs without it and every
loss runs the reference implementation, which gives the same results, slower.

Flags: ``-O3`` and ``-ffp-contract=fast`` (a·b + c may become one FMA, which is
at least as exact).  Never ``-ffast-math``: the kernels rely on IEEE semantics
(NaN/inf propagation, subnormals kept, sums in the order written).  The kernels
are compiled for several x86-64 instruction sets inside the one extension and
the best one is chosen at import (see ``ck_isa.c``).
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KDIR = os.path.join("src", "crossentropy", "_kernels")


class optional_build_ext(build_ext):
    """Build the kernels if possible; never fail the installation because of them."""

    def finalize_options(self):
        super().finalize_options()
        try:
            import numpy
        except ImportError:  # no NumPy at build time: nothing to build against
            self._numpy_include = None
        else:
            self._numpy_include = numpy.get_include()

    def build_extension(self, ext):
        if self._numpy_include is None:
            self._skip(ext, "NumPy is not importable at build time")
            return
        ext.include_dirs.append(self._numpy_include)
        try:
            super().build_extension(ext)
        except Exception as e:  # compiler missing or failing: install without the kernels
            self._skip(ext, f"{type(e).__name__}: {e}")

    def _skip(self, ext, why):
        msg = (f"\nWARNING: the compiled kernels ({ext.name}) were not built ({why}).\n"
               "crossentropy works without them (the reference implementation runs), only slower.\n")
        sys.stderr.write(msg)


def _args():
    if sys.platform == "win32":
        return ["/O2"]
    args = ["-O3", "-g0", "-std=c11", "-ffp-contract=fast", "-fno-strict-aliasing", "-Wno-psabi"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        # no MMX registers: they alias the x87 stack, and code that uses them without
        # `emms` breaks every later long double operation of the process
        args.append("-mno-mmx")
    return args


setup(
    ext_modules=[
        Extension(
            "crossentropy._kernels._ckernels",
            sources=[os.path.join(KDIR, f) for f in ("ck_module.c", "ck_isa.c", "ck_pool.c")],
            depends=[os.path.join(KDIR, f) for f in ("ck_math.h", "ck_vmath.h", "ck_vnames.h", "ck_vnames_undef.h",
                                                     "ck_common.h", "ck_isa.h", "ck_pool.h", "ck_kern.h",
                                                     "ck_ce_t.h", "ck_bce_t.h")],
            extra_compile_args=_args(),
            extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": optional_build_ext},
)
