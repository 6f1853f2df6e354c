"""The kernels' thread pool: fork safety, concurrent callers, thread configuration."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import crossentropy as ce
from crossentropy import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels are not built")


def _problem(seed=0, N=512, C=2000):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, C)).astype(np.float32), rng.integers(0, C, N)


def _work(seed):
    x, y = _problem(seed)
    v, g = ce.value_and_grad(ce.cross_entropy, x, y, label_smoothing=0.05)
    return float(v), float(g.sum(dtype=np.float64)), ce.binary_cross_entropy_with_logits(x, x > 0).item()


def test_fork_after_a_parallel_call(kernels_config):
    """multiprocessing with the fork start method, after the pool has run: no hang, same numbers."""
    kernels_config.configure(threads=2)
    expected = [_work(s) for s in range(3)]  # the pool's workers now exist in this process
    assert _kernels.info()["workers"] >= 1
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        res = pool.map_async(_work, range(3))
        got = res.get(timeout=120)  # a hang fails here instead of blocking CI
    assert got == expected


def test_os_fork_child_runs_parallel_kernels(kernels_config):
    kernels_config.configure(threads=2)
    expected = _work(5)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the pool was reset by the atfork handler; it starts new workers
        try:
            ok = _work(5) == expected and _kernels.info()["workers"] >= 1
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out == b"1"


def test_spawned_processes(tmp_path):
    """The spawn start method (torch.distributed, dask's default) imports a fresh copy."""
    code = ("import multiprocessing as mp, sys; sys.path.insert(0, %r)\n"
            "from tests.kernels.test_threads import _work\n"
            "if __name__ == '__main__':\n"
            "    with mp.get_context('spawn').Pool(2) as p: print(p.map(_work, [1, 2]) == [_work(1), _work(2)])\n"
            % os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True"


def test_concurrent_python_threads(kernels_config):
    """Calls from several Python threads at once (the GIL is released): every result as if alone."""
    kernels_config.configure(threads=2)
    expected = {s: _work(s) for s in range(6)}
    got = {}
    errors = []

    def run(s):
        try:
            for _ in range(3):
                got[s] = _work(s)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(s,)) for s in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not errors and got == expected


def test_thread_count_from_environment():
    code = "from crossentropy import _kernels; i = _kernels.info(); print(i['threads'], i['default_threads'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CROSSENTROPY_NUM_THREADS": "3"}).stdout.split()
    assert out[0] == "3" and int(out[1]) == len(os.sched_getaffinity(0))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "CROSSENTROPY_NUM_THREADS"}).stdout.split()
    assert out[0] == out[1]  # default: the cores this process may run on


def test_gil_released_during_a_kernel(kernels_config):
    """A long kernel call lets another Python thread run: a thread that needs the GIL
    every 0.5 ms keeps ticking during a call of tens of milliseconds."""
    import time

    kernels_config.configure(threads=1)
    x, y = _problem(0, N=2048, C=8000)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)  # releases the GIL; taking it back needs the kernel not to hold it

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        n0 = len(ticks)
        t0 = time.perf_counter()
        ce.value_and_grad(ce.cross_entropy, x, y)
        ms = (time.perf_counter() - t0) * 1e3
        n1 = len(ticks)
    finally:
        stop.set()
        t.join()
    assert ms > 5 and n1 - n0 >= 5, (ms, n1 - n0)
