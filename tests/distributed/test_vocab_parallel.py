"""crossentropy.torch.distributed on real gloo process groups of 1, 2, 3 and 4 processes (CPU).

One group per process count runs every case of ``_worker.cases`` (uneven
shards: V = 37 split 20/17, 5/17/15 and 9/0/17/11 — one rank holding no
column at all); each case here checks every rank's report:

* agreement with the single-process library (value and every gradient) for
  every option alone and in combinations, every reduction, float64 (≤ 1e-12),
  float32 (64 ulp) and half precision, the loss bit-identical on every rank;
* confident rows (float32 losses near 1e-31, float64 near 1e-298: kept to a
  few ulp, not rounded to 0), all-ignored batches, non-finite logits, the
  ``validate=False`` path, ``torch.no_grad``;
* bad input: every rank raises the library's error, before any all-reduce
  (only the handshake's all-gathers ran), and the group still works after;
* the collectives each call makes, against ``docs/distributed.md``;
* autodiff modes: first derivatives under ``create_graph=True``, a second
  backward with ``retain_graph``; second derivatives, forward mode,
  ``torch.func`` and differentiable class weights raise our error.

The groups are shared by the xdist workers of one run (a file lock), so each
starts once per run.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import _launch  # noqa: E402
import _worker  # noqa: E402

WORLDS = (1, 2, 3, 4)


def _reports(shared_run, world):
    """The group of ``world`` processes runs once per test run, shared by the xdist workers."""
    def launch():
        try:
            return _launch.launch(world)
        except RuntimeError as e:
            return {"__crash__": str(e)}
    return shared_run(f"dist-world{world}", launch)


# -- checks per case group ---------------------------------------------------------------------

def _agreement(case, reports):
    tol = case.expect["tol"]
    for rank, rep in enumerate(reports):
        r = rep[case.name]
        for k, v in r.items():
            if isinstance(v, float):
                assert v <= tol, f"rank {rank}: {k} differs from one process by {v:.3g} (relative) > {tol:.3g}"
            elif k.endswith("_ok"):
                assert v is True, f"rank {rank}: {k}"
    digests = {rep[case.name]["loss_digest"] for rep in reports}
    assert len(digests) == 1, "the ranks' losses are not bit-identical"


def _edge(case, reports):
    name = case.name
    for rank, rep in enumerate(reports):
        r = rep[name]
        if "confident_rows" in name:
            assert r["min_loss"] > 0, f"rank {rank}: a confident row's loss rounded to 0"
            assert r["max_rel_ulps"] <= case.expect["ulps"], f"rank {rank}: {r}"
            if r["held_rows"]:
                assert r["target_grad_nonzero"], f"rank {rank}: a target gradient −(1 − p_y) rounded to 0"
                assert r["target_grad_rel_ulps"] <= case.expect["ulps"], f"rank {rank}: {r}"
        elif "all_ignored" in name:
            assert r["grads_zero"], f"rank {rank}: an all-ignored batch has a non-zero gradient"
            if name.endswith("mean"):
                assert r["loss_nan"], "the mean over no counted row is 0/0 = NaN (as PyTorch and the core)"
            else:
                assert r["loss_zero"]
        elif "validate_false" in name:
            assert r["digest_True"] == r["digest_False"], "validate=False changed the result"
            assert r["gathers_True"] == (1 if len(reports) > 1 else 0) and r["gathers_False"] == 0
            assert r["bad_row_nan"], "a target outside [0, V) with validate=False must give NaN, never a number"
            assert r["bad_row_grad_nan"]
        elif "no_grad" in name:
            assert r["no_history"] and r["loss"] <= case.expect["tol"], r
        elif "nonfinite" in name:
            assert r["has_nan"] and r["loss_agrees"] and r["grad_agrees"], r
        elif name == "gather_vocab_sizes":
            assert r["sizes"] == r["expected"]
        else:
            raise AssertionError(f"no check for {name}")


def _error(case, reports):
    world = len(reports)
    for rank, rep in enumerate(reports):
        r = rep[case.name]
        assert r["raised"] == case.expect["cls"], f"rank {rank} raised {r['raised']}: {r['msg']}"
        assert case.expect["text"] in r["msg"], f"rank {rank}: {r['msg']!r}"
        # raised before any heavy work: at most the handshake (and the error messages') all-gathers ran
        assert set(r["ops"]) <= ({"all_gather"} if world > 1 else set()), f"rank {rank} made {r['ops']}"


def _expected_collectives(name, world):
    """What docs/distributed.md says each call makes (N = 13 rows, float32, k columns)."""
    N, D, item = _worker.N, _worker.D, 4
    if world == 1:
        return [], []
    hand = [["all_gather", [11], "int64", 88]]
    if name.startswith("logits"):
        k = 7 if "smoothing" in name else 3
        fwd = ([] if "validate_false" in name else hand) + [["all_reduce(MAX)", [N], "float32", N * item],
                                                            ["all_reduce(SUM)", [N, k], "float32", N * k * item]]
        return fwd, []
    fwd = list(hand)
    for i0 in range(0, N, 4):
        rows = min(N, i0 + 4) - i0
        fwd += [["all_reduce(MAX)", [rows], "float32", rows * item],
                ["all_reduce(SUM)", [rows, 3], "float32", rows * 3 * item]]
    bwd = [] if "local_hidden_grad" in name else [["all_reduce(SUM)", [N, D], "float32", N * D * item]]
    return fwd, bwd


def _collectives(case, reports):
    fwd, bwd = _expected_collectives(case.name[len("collectives-"):], len(reports))
    for rank, rep in enumerate(reports):
        r = rep[case.name]
        assert r["forward"] == fwd, f"rank {rank}: forward made {r['forward']}"
        assert r["backward"] == bwd, f"rank {rank}: backward made {r['backward']}"


def _autodiff(case, reports):
    for rank, rep in enumerate(reports):
        r = rep[case.name]
        assert r["raised"] == case.expect["cls"], f"rank {rank}: {r['raised']}: {r['msg']}"
        if "double_backward" in case.name:
            assert "second derivatives are not supported" in r["msg"]


CHECKS = {"agreement": _agreement, "edge": _edge, "error": _error, "collectives": _collectives,
          "autodiff": _autodiff}
PARAMS = [(w, c) for w in WORLDS for c in _worker.cases(w)]


@pytest.mark.parametrize("world, case", PARAMS, ids=[f"{w}ranks-{c.name}" for w, c in PARAMS])
def test_case(shared_run, world, case):
    reports = _reports(shared_run, world)
    if "__crash__" in reports:
        pytest.fail(reports["__crash__"], pytrace=False)
    assert len(reports) == world
    for rank, rep in enumerate(reports):
        assert case.name in rep, f"rank {rank} did not report {case.name}"
        assert "crash" not in rep[case.name], f"rank {rank}: {rep[case.name]['crash']}"
    CHECKS[case.group](case, reports)


@pytest.mark.parametrize("world", WORLDS)
def test_group_still_works_after_the_errors(shared_run, world):
    reports = _reports(shared_run, world)
    if "__crash__" in reports:
        pytest.fail(reports["__crash__"], pytrace=False)
    for rep in reports:
        assert rep["__alive__"]["sizes"] == list(_worker.SPLITS[world])


def test_every_option_is_compared_alone_and_combined():
    """The agreement cases cover each option alone, every reduction, both dtypes, both functions."""
    names = {c.name for c in _worker.cases(4) if c.group == "agreement"}
    for kind in ("logits", "linear"):
        for dtype in ("float64", "float32"):
            for opt in ("weight", "weight_slice", "ignore_index", "label_smoothing", "z_loss", "softcap",
                        "sample_weight"):
                for red in ("none", "sum", "mean"):
                    assert f"{kind}-{dtype}-{opt}-{red}" in names
            assert f"{kind}-{dtype}-num_items_in_batch-mean" in names
            assert f"{kind}-{dtype}-all-none" in names
