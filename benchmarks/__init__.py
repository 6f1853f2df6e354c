"""Benchmark suite (``python -m benchmarks``); see :mod:`benchmarks.run`."""
