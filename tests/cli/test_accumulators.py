"""The accumulators are exact and mergeable: same bits for any chunking, partitioning and merge order."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from crossentropy.scoring import Batch, ExactSums, ScoreAccumulator, ScoreSpec
from crossentropy.scoring.accumulators import Calibration
from crossentropy.scoring.bootstrap import ReplicateSums, poisson_weights
from crossentropy.scoring.exact import BIAS, sorted_run_sums
from crossentropy.scoring.roc import MemoryBudget, RocTable

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), st.integers(0, 2 ** 32 - 1))
def test_exact_sums_equal_the_rational_sum(values, seed):
    x = np.array(values)
    g = np.random.default_rng(seed).integers(0, 3, x.size)
    s = ExactSums(3)
    for part in np.array_split(np.arange(x.size), 4):
        s.add(x[part], g[part])
    for k in range(3):
        exact = sum((Fraction(v) for v in x[g == k]), Fraction(0))
        try:
            want = float(exact)
        except OverflowError:
            want = math.inf if exact > 0 else -math.inf
        assert s.value(k) == want
        if (g == k).any() and math.isfinite(want):
            assert s.mean(int((g == k).sum()), k) == float(exact / int((g == k).sum()))
    assert pickle.loads(pickle.dumps(s)).values() == s.values()


def test_exact_sums_non_finite_and_merge_order():
    a, b, c = ExactSums(), ExactSums(), ExactSums()
    a.add(np.array([1.0, np.inf]))
    b.add(np.array([-np.inf]))
    c.add(np.array([np.nan]))
    assert a.value() == math.inf
    a.merge(b)
    assert math.isnan(a.value())  # inf - inf
    parts = [np.random.default_rng(i).normal(size=1000) * 10.0 ** np.random.default_rng(i).integers(-300, 300, 1000)
             for i in range(5)]
    states = []
    for p in parts:
        s = ExactSums()
        s.add(p)
        states.append(s)
    fwd, bwd = ExactSums(), ExactSums()
    for s in states:
        fwd.merge(s)
    for s in reversed(states):
        bwd.merge(s)
    assert fwd.exact() == bwd.exact() and fwd.value() == float(sum(Fraction(v) for p in parts for v in p))


def test_poisson_weights_are_keyed_on_seed_row_and_replicate():
    w = poisson_weights(np.arange(50000), 64, seed=3)
    assert abs(w.mean() - 1) < 0.01 and abs(w.var() - 1) < 0.02
    freq = np.bincount(w.ravel(), minlength=9)[:5] / w.size
    np.testing.assert_allclose(freq, [math.exp(-1) / math.factorial(k) for k in range(5)], atol=0.003)
    rows = np.array([49999, 7, 1024, 1023, 30000])
    np.testing.assert_array_equal(poisson_weights(rows, 64, seed=3), w[rows])
    assert not np.array_equal(poisson_weights(rows, 64, seed=4), w[rows])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3000), st.integers(1, 6), st.integers(0, 2 ** 32 - 1))
def test_replicate_sums_are_exact_and_partition_independent(n, parts, seed):
    rng = np.random.default_rng(seed)
    X = np.stack([rng.exponential(size=n) * 10.0 ** rng.integers(-30, 30, n), rng.integers(0, 2, n)], 1)
    whole = ReplicateSums(16, seed=seed, n_stats=2)
    whole.add(np.arange(n), X)
    perm = rng.permutation(n)
    pieces = [ReplicateSums(16, seed=seed, n_stats=2) for _ in range(parts)]
    for piece, idx in zip(pieces, np.array_split(perm, parts)):
        piece.add(idx, X[idx])
    merged = pieces[-1]
    for piece in pieces[:-1]:
        merged = pickle.loads(pickle.dumps(merged))
        merged.merge(piece)
    assert merged.totals() == whole.totals()
    np.testing.assert_array_equal(merged.means(0), whole.means(0))
    w = poisson_weights(np.arange(n), 16, seed=seed)
    b = int(rng.integers(0, 16))
    exact = sum(Fraction(float(x)) * int(k) for x, k in zip(X[:, 0], w[:, b]))
    if w[:, b].sum():
        assert whole.means(0)[b] == float(exact / int(w[:, b].sum()))


def _exact_auc(s, y):
    pos, neg = s[y], s[~y]
    num = sum(Fraction(int((neg < v).sum())) + Fraction(int((neg == v).sum()), 2) for v in pos)
    return float(num / (len(pos) * len(neg)))


@pytest.mark.parametrize("budget", [None, 1 << 16])
def test_roc_table_exact_with_ties_and_spilling(budget):
    rng = np.random.default_rng(5)
    n = 20000
    y = rng.random(n) < 0.3
    s = np.round(rng.normal(size=n) + y, 2)
    s[::7] = -0.0  # -0.0 and 0.0 are the same value
    b = MemoryBudget(budget) if budget else MemoryBudget()
    t = RocTable(budget=b)
    for part in np.array_split(np.arange(n), 23):
        t.update(s[part], y[part])
    if budget:
        assert any(r.path is not None for side in t.runs for r in side), "the small budget spills to disk"
    res = t.result()
    assert res["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-13)
    small = RocTable(budget=b)
    small.update(s[:3000], y[:3000])
    assert small.result()["auc"] == _exact_auc(s[:3000], y[:3000])
    clone = pickle.loads(pickle.dumps(t))
    assert clone.result()["auc"] == res["auc"]
    b.cleanup()


def test_weighted_roc_table_is_partition_independent():
    rng = np.random.default_rng(6)
    n = 5000
    y = rng.random(n) < 0.4
    s = np.round(rng.normal(size=n) + y, 1)
    w = rng.integers(0, 5, n) * 0.3
    results = []
    for parts in (1, 7, 50):
        tables = [RocTable(weighted=True) for _ in range(parts)]
        for t, idx in zip(tables, np.array_split(rng.permutation(n), parts)):
            t.update(s[idx], y[idx], w[idx])
        for t in tables[1:]:
            tables[0].merge(t)
        results.append(tables[0].result()["auc"])
    assert results[0] == results[1] == results[2]
    assert results[0] == pytest.approx(roc_auc_score(y, s, sample_weight=w), rel=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 400), st.integers(2, 5), st.integers(1, 5), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 32 - 1))
def test_whole_report_is_partition_and_merge_order_independent(n, k, parts, weighted, logits, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3
    x = z if logits else np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = rng.integers(0, k, n)
    w = rng.integers(0, 3, n) * 0.5 if weighted else None
    if weighted and w.sum() == 0:
        w[0] = 1.0
    spec = ScoreSpec(n_classes=k, logits=logits, weighted=weighted, ci=0.9, replicates=20, seed=seed % 1000)
    whole = ScoreAccumulator(spec)
    whole.update(Batch(x, y, w))
    perm = rng.permutation(n)
    accs = []
    for idx in np.array_split(perm, parts):
        idx = np.sort(idx)
        a = ScoreAccumulator(spec)
        a.update(Batch(x[idx], y[idx], None if w is None else w[idx], rows=idx))
        accs.append(pickle.loads(pickle.dumps(a)))
    order = rng.permutation(len(accs))
    merged = accs[order[0]]
    for i in order[1:]:
        merged.merge(accs[i])
    assert merged.finalize() == whole.finalize()


def test_calibration_bins_are_sklearns():
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.random(100000), np.linspace(0, 1, 10001), [0.1, 0.30000000000000004, 5e-324, 1.0]])
    for bins in (1, 3, 7, 10, 15, 100):
        c = Calibration(ScoreSpec(n_classes=2, binary=True, n_bins=bins))
        np.testing.assert_array_equal(c.bin(v), np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], v))


def _general_result(s, y, budget):
    """The same table in the general form (a first update with a negative score converts it; that row is removed)."""
    t = RocTable(budget=budget)
    t.update(np.array([-1.0]), np.array([False]))
    assert not t.packed
    t.runs[1].clear()
    t._recount()
    for part in np.array_split(np.arange(s.size), 3):
        t.update(s[part], y[part])
    return t.result()


@pytest.mark.parametrize("ties", ["none", "few", "many"])
@pytest.mark.parametrize("budget", [None, 1 << 16])
def test_packed_roc_table_is_exact_and_equals_the_general_form(ties, budget):
    """Probabilities take the packed form: exact with and without ties, spilled or not, same curve as the general form."""
    rng = np.random.default_rng(11)
    n = 30000
    y = rng.random(n) < 0.35
    s = np.clip(rng.random(n) * 0.6 + y * 0.3, 0.0, 1.0)
    if ties == "few":  # some scores repeated (the run keeps one entry per row)
        s[rng.integers(0, n, 600)] = s[rng.integers(0, n, 600)]
    elif ties == "many":  # two decimals: repeats folded into counts
        s = np.round(s, 2)
    if ties != "none":
        s[::97] = -0.0  # the same score as 0.0
    b = MemoryBudget(budget) if budget else MemoryBudget()
    t = RocTable(budget=b)
    for part in np.array_split(np.arange(n), 41):
        t.update(s[part], y[part])
    assert t.packed
    if budget:
        assert any(r.path is not None for r in t.pruns), "the small budget spills to disk"
    res = t.result()
    assert res["auc"] == roc_auc_score(y, s) or res["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-15)
    head = RocTable(budget=b)
    head.update(s[:2500], y[:2500])
    assert head.result()["auc"] == _exact_auc(s[:2500] + 0.0, y[:2500])
    assert res == _general_result(s, y, b)
    # Any chunking, merge order and pickling: the same bits, curve included.
    parts = [RocTable(budget=b) for _ in range(5)]
    for i, idx in enumerate(np.array_split(rng.permutation(n), 5)):
        for piece in np.array_split(idx, i + 1):
            parts[i].update(s[piece], y[piece])
    merged = pickle.loads(pickle.dumps(parts[3]))
    for i in (4, 0, 2, 1):
        merged.merge(pickle.loads(pickle.dumps(parts[i])) if i % 2 else parts[i])
    assert merged.result() == res
    assert len(res["curve"]["fpr"]) > 20 and res["curve"]["fpr"][0] == 0.0 and res["curve"]["tpr"][-1] == 1.0
    b.cleanup()


def test_packed_roc_table_converts_on_other_scores_and_merges_with_the_general_form():
    rng = np.random.default_rng(12)
    n = 4000
    y = rng.random(n) < 0.5
    s = np.round(rng.normal(size=n) + y, 3)
    s[:1500] = np.abs(s[:1500]) % 1.0  # the first chunks are all in [0, 1): packed
    whole = RocTable()
    whole.update(s, y)
    assert not whole.packed
    t = RocTable()
    t.update(s[:1500], y[:1500])
    assert t.packed
    t.update(s[1500:], y[1500:])
    assert not t.packed and t.result() == whole.result()
    a, g = RocTable(), RocTable()
    a.update(s[:1500], y[:1500])
    g.update(s[1500:], y[1500:])
    a.merge(g)
    assert a.result() == whole.result()
    a, g = RocTable(), RocTable()
    a.update(s[:1500], y[:1500])
    g.update(s[1500:], y[1500:])
    g.merge(a)
    assert g.result() == whole.result()
    assert whole.result()["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-13)


@pytest.mark.parametrize("budget, n_bins", [(None, 10), (1 << 16, 10), (None, 7), (1 << 16, 15)])
def test_classwise_bins_from_the_roc_tables_equal_the_per_chunk_bins(budget, n_bins):
    """Multi-class unweighted reports take the class-wise bins from the ROC tables' final pass: the same figures
    as binning every chunk (which --no-auc does), with values on the edges, zeros, ones, tiny and repeated values."""
    rng = np.random.default_rng(13)
    n, k = 6000, 4
    z = rng.normal(size=(n, k)) * 3
    x = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    x[:200] = np.round(x[:200], 1)  # many values exactly on the edges (0.1, 0.2, ...)
    x[200:260] = [0.30000000000000004, 0.0, 5e-324, 1.0 - 0.30000000000000004]
    x[260:300] = [1.0, 0.0, 0.0, 0.0]
    x[300:400, :2] = 1e-45
    y = rng.integers(0, k, n)
    outs = []
    for auc in (True, False):
        spec = ScoreSpec(n_classes=k, auc=auc, n_bins=n_bins)
        b = MemoryBudget(budget) if budget else MemoryBudget()
        acc = ScoreAccumulator(spec, b)
        for part in np.array_split(np.arange(n), 13):
            acc.update(Batch(x[part], y[part], rows=part))
        assert acc._classwise_from_roc == auc
        r = acc.finalize()
        outs.append((r["calibration"], [c["ece"] for c in r["per_class"]]))
        b.cleanup()
    assert outs[0] == outs[1]
    assert outs[0][0]["classwise_ece"] > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e300, allow_subnormal=True), max_size=40),
       st.integers(0, 9000), st.lists(st.integers(0, 10000), max_size=6), st.integers(0, 2 ** 32 - 1))
def test_sorted_run_sums_are_exact(values, n_random, cuts, seed):
    """Runs of sorted non-negative doubles (subnormals, zeros, long runs of one exponent) summed exactly."""
    rng = np.random.default_rng(seed)
    x = np.sort(np.concatenate([np.array(values, dtype=np.float64), rng.random(n_random)]) + 0.0)
    starts = np.sort(np.array([0] + [c % (x.size + 1) for c in cuts], dtype=np.int64))
    got = sorted_run_sums(x.view(np.uint64), starts)
    ends = np.append(starts[1:], x.size)
    for g, (a, b) in enumerate(zip(starts, ends)):
        assert Fraction(got[g], 2 ** BIAS) == sum((Fraction(v) for v in x[a:b].tolist()), Fraction(0))
