"""The Triton kernels (crossentropy._kernels.triton) on CPU: interpreted cases, GPU compilation, bad input.

* Interpreted cases (``_triton_cases.py``): Triton's interpreter only takes
  effect when ``TRITON_INTERPRET=1`` is set before :mod:`triton` is first
  imported, which a pytest process cannot promise (torch.compile/inductor or
  the doctest collection may import it first).  So each group of cases runs
  once in a fresh ``python _triton_cases.py GROUP`` with the variable set;
  the results are shared by the xdist workers of one run (a file lock) and
  every case is its own test item here, failing with the case's message.
* GPU compilation: every kernel compiles for sm_80/sm_90 with Triton's own
  ptxas (no GPU needed), with IEEE division and without flush-to-zero.
* Bad input and the package's lazy imports run in this process (the checks
  come before any kernel is imported or launched).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

import crossentropy
from crossentropy._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError, TargetOutOfRangeError

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import _triton_cases  # noqa: E402

# Never import triton in this process: after TensorFlow (imported by other test modules)
# importing it aborts the process (both register the same LLVM options).
if importlib.util.find_spec("triton") is None:  # CI installs it (.ci/run); a skip there fails the run
    pytest.skip("triton is not installed", allow_module_level=True)

SRC = str(pathlib.Path(crossentropy.__file__).parent.parent)


def _run(args, interpret, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, str(HERE)] + [p for p in sys.path if p]),
               TRITON_DEFAULT_FP_FUSION="0")
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    out = subprocess.run([sys.executable, str(HERE / "_triton_cases.py"), *args], env=env, capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        return {"__crash__": f"exit {out.returncode}\n{out.stderr[-4000:]}"}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"__crash__": f"no JSON on stdout:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"}


def _results(shared_run, key, args, interpret):
    """Run one subprocess per (run, key), shared by the xdist workers of a run."""
    return shared_run(f"triton-{key}", lambda: _run(args, interpret))


# Two subprocesses (one per xdist worker on CI's two cores), each running several groups.
BATCHES = (("chunk", "dtypes", "plain"), ("exact", "nonfinite", "split"))
CASES = [(b, n) for b, groups in enumerate(BATCHES) for g in groups for n in _triton_cases.GROUPS[g]]


def test_every_group_runs():
    assert sorted(g for b in BATCHES for g in b) == sorted(_triton_cases.GROUPS)


@pytest.mark.parametrize("batch, name", CASES, ids=[n for _, n in CASES])
def test_interpreted(shared_run, batch, name):
    res = _results(shared_run, f"interp-{batch}", list(BATCHES[batch]), True)
    if "__crash__" in res:
        pytest.fail(f"the interpreter subprocess for {BATCHES[batch]} failed: {res['__crash__']}")
    assert name in res, f"case {name} did not report"
    if res[name] is not None:
        pytest.fail(res[name], pytrace=False)


COMPILE_JOBS = ["ce_fused_kernel/sm_90/all options", "ce_fused_kernel/sm_80/all options", "ce_fused_kernel/sm_90/plain",
                "ce_partial_kernel/sm_90", "ce_finish_kernel/sm_90"]


@pytest.mark.parametrize("job", range(len(COMPILE_JOBS)), ids=COMPILE_JOBS)
def test_compiles_for_gpu(shared_run, job):
    res = _results(shared_run, "compile", ["--compile"], False)
    if "__crash__" in res:
        pytest.fail(f"the compile subprocess failed: {res['__crash__']}")
    assert len(res) == len(COMPILE_JOBS)
    name, problem = list(res.items())[job]
    assert problem is None, f"{name}: {problem}"


# ---------------------------------------------------------------------------------------------
# in this process: imports, bad input (raised before any kernel is imported or launched)
# ---------------------------------------------------------------------------------------------

def test_imports_are_lazy():
    code = ("import sys, crossentropy, crossentropy._kernels, crossentropy._kernels.triton as k; "
            "import crossentropy._kernels.triton._ce_triton, crossentropy._kernels.triton._layout; "
            "assert 'triton' not in sys.modules and 'torch' not in sys.modules; "
            "k.merge_partials; k.available(); assert 'torch' in sys.modules and 'triton' not in sys.modules; "
            "print('ok')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC] + [p for p in sys.path if p]))
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def _kt():
    import crossentropy._kernels.triton as kt

    return kt


X = torch.zeros(3, 5)
Y = torch.tensor([0, 4, 2])
_W6 = torch.zeros(3, 6)


@pytest.mark.parametrize("call, err, words", [
    (lambda k: k.chunk_cross_entropy(X.double(), Y), InvalidDTypeError, "float32, bfloat16 or float16"),
    (lambda k: k.chunk_cross_entropy(X.to(torch.int32), Y), InvalidDTypeError, "logits must be"),
    (lambda k: k.chunk_cross_entropy(X[0], Y), ShapeMismatchError, "2-D"),
    (lambda k: k.chunk_cross_entropy(X.t(), Y), InvalidOptionError, "contiguous along its class axis"),
    (lambda k: k.chunk_cross_entropy(X, Y[:2]), ShapeMismatchError, "target must have shape (3,)"),
    (lambda k: k.chunk_cross_entropy(X, Y.float()), InvalidDTypeError, "integer class indices"),
    (lambda k: k.chunk_cross_entropy(X, Y, weight=torch.ones(4)), ShapeMismatchError, "weight must have shape (5,)"),
    (lambda k: k.chunk_cross_entropy(X, Y, softcap=0.0), InvalidOptionError, "softcap"),
    (lambda k: k.chunk_cross_entropy(X, Y, softcap=-3), InvalidOptionError, "softcap"),
    (lambda k: k.chunk_cross_entropy(X, Y, label_smoothing=1.5), InvalidOptionError, "label_smoothing"),
    (lambda k: k.chunk_cross_entropy(X, Y, z_loss=-1.0), InvalidOptionError, "z_loss"),
    (lambda k: k.chunk_cross_entropy(X, Y, ignore_index=1.5), InvalidOptionError, "ignore_index"),
    (lambda k: k.chunk_cross_entropy(X, Y, grad_scale=1.0), InvalidOptionError, "grad_into"),
    (lambda k: k.chunk_cross_entropy(X, Y, grad_into=X), InvalidOptionError, "grad_scale"),
    (lambda k: k.chunk_cross_entropy(X, Y, grad_scale=1.0, grad_into=torch.zeros(3, 4)), ShapeMismatchError,
     "grad_into must have the logits' shape"),
    (lambda k: k.chunk_cross_entropy(X, Y, grad_scale=1.0, grad_into=X.half()), InvalidDTypeError, "dtype"),
    (lambda k: k.chunk_cross_entropy(X, Y, grad_scale=torch.ones(2), grad_into=X), ShapeMismatchError,
     "grad_scale"),
    (lambda k: k.chunk_cross_entropy(X, torch.tensor([0, 5, 1])), TargetOutOfRangeError,
     "target[1] = 5 is outside [0, 5) classes"),
    (lambda k: k.chunk_cross_entropy(X, torch.tensor([0, -100, -1]), ignore_index=-100), TargetOutOfRangeError,
     "target[2] = -1"),
    (lambda k: k.chunk_cross_entropy(X, Y, block_v=3), InvalidOptionError, "power of two"),
    (lambda k: k.chunk_cross_entropy(torch.zeros(3, 0), Y), ShapeMismatchError, "at least one class"),
    (lambda k: k.chunk_cross_entropy(_W6[:, :5], Y, grad_scale=1.0, grad_into=_W6[:, 1:]), InvalidOptionError,
     "overlaps logits"),
    (lambda k: k.vocab_partials(X, Y, class_offset=1, num_classes=5), InvalidOptionError, "class_offset"),
    (lambda k: k.vocab_partials(X, Y, class_offset=0, num_classes=0), InvalidOptionError, "num_classes"),
    (lambda k: k.vocab_partials(X, Y, class_offset=0, num_classes=9, weight=torch.ones(9)), ShapeMismatchError,
     "weight must have shape (5,)"),
    (lambda k: k.merge_partials([]), InvalidOptionError, "at least one"),
    (lambda k: k.vocab_finish(X, Y, None, class_offset=0, num_classes=5), InvalidDTypeError, "Partials"),
    (lambda k: k.vocab_finish(X, torch.tensor([0, 1, 9]), _part(k, 5), class_offset=0, num_classes=5),
     TargetOutOfRangeError, "target[2] = 9"),
    (lambda k: k.vocab_finish(X, Y, _part(k, 6), class_offset=0, num_classes=5), InvalidOptionError,
     "num_classes=6"),
    (lambda k: k.merge_partials([_part(k, 5), _part(k, 6)]), InvalidOptionError, "parts[1] was computed"),
])
def test_bad_input(call, err, words):
    with pytest.raises(err) as e:
        call(_kt())
    assert words in str(e.value)


def _part(k, n):
    return k.Partials(torch.zeros(3, 15), torch.zeros(3, 2, dtype=torch.int64), (False, False, None, n))


def test_cpu_tensors_need_the_interpreter():
    """Without TRITON_INTERPRET=1 a CPU tensor is refused (or declined) without importing triton."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this pytest process itself runs with TRITON_INTERPRET=1")
    kt = _kt()
    with pytest.raises(InvalidOptionError, match="must be a CUDA tensor"):
        kt.chunk_cross_entropy(X, Y)
    assert kt.cross_entropy_cuda(X, Y) is NotImplemented
    with pytest.raises(InvalidOptionError, match="must be a CUDA tensor"):
        kt.vocab_partials(X, Y, class_offset=0, num_classes=5)


def test_merge_is_the_allreduce_rule():
    """merge_partials == MAX/MIN reductions then the SUM of lift_partials, on hand-made states."""
    kt = _kt()
    from crossentropy._kernels.triton import _layout as L

    g = torch.Generator().manual_seed(0)
    parts = []
    for r in range(3):
        st = torch.rand(4, L.NSTAT, generator=g)
        st[:, L.M] = torch.tensor([1.0, 2.0, float("-inf"), 0.5 * r])
        idx = torch.stack([torch.tensor([10 * r + 1, 10 * r + 2, 10 * r, 10 * r + 3]),
                           torch.tensor([L.BIG, 10 * r + 5, L.BIG, L.BIG])], 1)
        parts.append(kt.Partials(st, idx, (True, True, None, 30)))
    merged = kt.merge_partials(parts)
    ms = torch.stack([p.stats[:, L.M] for p in parts])
    m = ms.max(0).values
    assert torch.equal(merged.stats[:, L.M], m)
    # ties in row 0 and 1 (every slice has M = 1 or 2): the first slice's K; all −inf in row 2: the smallest K
    assert merged.index[:, L.K].tolist() == [1, 2, 0, 23]
    assert merged.index[:, L.KPINF].tolist() == [L.BIG, 5, L.BIG, L.BIG]
    summed = sum(kt.lift_partials(p, m, merged.index[:, 0], merged.index[:, 1]) for p in parts)
    keep = [i for i in range(L.NSTAT) if i != L.M]
    torch.testing.assert_close(merged.stats[:, keep], summed[:, keep], rtol=1e-6, atol=0)
    # S_off of row 0: all three slices tie at M = 1; the two that lose the tie add their own 1
    want = sum(float(p.stats[0, L.S_OFF]) for p in parts) + 2.0
    assert abs(float(merged.stats[0, L.S_OFF]) - want) < 1e-6 * want
    # row 2 is all −inf everywhere: nothing is rescaled into S_off (no NaN from −inf − (−inf))
    assert float(merged.stats[2, L.S_OFF]) == 0.0


def test_cross_entropy_cuda_declines_without_cuda():
    kt = _kt()
    x = torch.zeros(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    assert kt.cross_entropy_cuda(x.double(), y) is NotImplemented
    assert kt.cross_entropy_cuda(x, x) is NotImplemented  # probability targets
    assert kt.cross_entropy_cuda(x.numpy(), y) is NotImplemented
    assert kt.cross_entropy_cuda(torch.zeros(4, 3, device="meta"), y) is NotImplemented
