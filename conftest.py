"""Root pytest configuration, loaded before anything under tests/ or src/.

JAX's x64 switch is process-global: it gets one value for the whole session,
set before any module imports jax, so a float64 parity test never silently runs
in float32 because of which module an xdist worker happened to import first.
Tests and doctests that want float32 ask for it with an explicit dtype.
"""

import os

os.environ["JAX_ENABLE_X64"] = "1"

# SciPy reads SCIPY_ARRAY_API once, when it is first imported (and scikit-learn decides then
# whether its array-API tests can run): set before any module imports scipy, for the whole
# session, so that scikit-learn's own array-API tests of log_loss (tests/upstream) run
# whichever worker imports scipy first.
os.environ["SCIPY_ARRAY_API"] = "1"

# Triton (the `cuda` extra, installed by .ci/run) and TensorFlow each register the same LLVM
# command-line options; in one process, importing triton *after* TensorFlow aborts the process
# ("Option 'bitcode-mdindex-threshold' registered more than once").  torch._dynamo imports triton
# whenever it is installed (torch.compile, torch.optim), so every test process imports it here,
# before any test module can import TensorFlow.  Triton first, then TensorFlow, is fine.
try:
    import triton  # noqa: E402, F401
except ImportError:
    pass
