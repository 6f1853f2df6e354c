"""Start a gloo process group of R worker processes on this machine and collect what they report.

Each worker is ``python _worker.py RANK WORLD STORE OUT`` with a ``file://``
rendezvous in a fresh temporary directory (no port to pick, nothing to
collide with a concurrent run) and a collective timeout, so that a bug that
leaves ranks waiting fails the run instead of hanging it.  Every worker
writes one JSON file; :func:`launch` returns them in rank order, or raises
with the workers' stderr when one crashed or the group ran out of time.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
WORKER = HERE / "_worker.py"


def _env():
    import crossentropy

    src = str(pathlib.Path(crossentropy.__file__).parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p])
    # One thread per worker: up to 4 workers share CI's 2 cores.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CROSSENTROPY_DIST_TEST="1")
    return env


def launch(world: int, *args: str, timeout: float = 300.0) -> list[dict]:
    """Run the worker suite on ``world`` processes; the list of their JSON reports, rank order."""
    with tempfile.TemporaryDirectory(prefix="ce-dist-") as tmp:
        store = os.path.join(tmp, "store")
        outs = [os.path.join(tmp, f"rank{r}.json") for r in range(world)]
        logs = [open(os.path.join(tmp, f"rank{r}.log"), "w+") for r in range(world)]
        procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), store, outs[r], *args],
                                  env=_env(), stdout=logs[r], stderr=subprocess.STDOUT)
                 for r in range(world)]
        deadline = time.monotonic() + timeout
        try:
            for pr in procs:
                pr.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            for pr in procs:  # only the processes started here, by their own handle
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()
        texts = []
        for f in logs:
            f.seek(0)
            texts.append(f.read())
            f.close()
        codes = [pr.returncode for pr in procs]
        if any(codes) or not all(os.path.exists(o) for o in outs):
            tail = "\n".join(f"--- rank {r} (exit {c}) ---\n{t[-3000:]}" for r, (c, t) in enumerate(zip(codes, texts)))
            raise RuntimeError(f"the {world}-process group failed:\n{tail}")
        return [json.loads(pathlib.Path(o).read_text()) for o in outs]
