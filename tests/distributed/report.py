"""Print the measured agreement of the vocabulary-parallel losses with one process, as markdown tables.

    python tests/distributed/report.py        # runs the gloo groups of 1, 2, 3, 4 processes (about a minute)

For every option set (``_worker.OPTIONS``) and process count: the largest
relative difference (max |a − b| / max |b|) between the distributed result
and the single-process library, over the reductions ('none', 'sum', 'mean'),
the ranks, the value and every gradient (logits shard; or hidden, weight
shard and bias shard), in float64 and in float32 (against float64 on the
same float32 inputs).  ``docs/distributed.md`` holds a copy of the output.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import _launch  # noqa: E402
import _worker  # noqa: E402

WORLDS = (1, 2, 3, 4)


def _worst(reports, names):
    worst = 0.0
    for rep in reports:
        for n in names:
            r = rep[n]
            if "crash" in r:
                return float("nan")
            worst = max([worst] + [v for v in r.values() if isinstance(v, float)])
    return worst


def main():
    runs = {w: _launch.launch(w) for w in WORLDS}
    cases = {w: _worker.cases(w) for w in WORLDS}
    for kind, title in (("logits", "vocab_parallel_cross_entropy (logits shard, value and ∂logits)"),
                        ("linear", "vocab_parallel_linear_cross_entropy (value, ∂hidden, ∂weight, ∂bias)")):
        print(f"\n#### {title}\n")
        cols = [f"{w} proc. {d}" for d in ("float64", "float32") for w in WORLDS]
        print("| options | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for oname in _worker.OPTIONS:
            cells = []
            for dtype in ("float64", "float32"):
                for w in WORLDS:
                    names = [c.name for c in cases[w] if c.group == "agreement" and c.params["kind"] == kind
                             and c.params["dtype"] == dtype and c.params["opts"] is _worker.OPTIONS[oname]]
                    cells.append(f"{_worst(runs[w], names):.1e}")
            print(f"| {oname} | " + " | ".join(cells) + " |")
    print("\nchunked (4 rows a chunk), half precision and the (3, 4) leading shape, float64 unless named:\n")
    print("| case | " + " | ".join(f"{w} proc." for w in WORLDS) + " |")
    print("|---|" + "---|" * len(WORLDS))
    extra = sorted({c.name for c in cases[4] if c.group == "agreement"
                    and (c.params.get("chunked") or c.params.get("lead") or "16" in c.params["dtype"])})
    for name in extra:
        print(f"| {name} | " + " | ".join(f"{_worst(runs[w], [name]):.1e}" for w in WORLDS) + " |")
    print("\nconfident rows (losses from 1e-25 down to 1.2e-31 in float32, to 9.7e-299 in float64): the largest "
          "error of the per-row loss and of the target's gradient, in ulp of the dtype:\n")
    print("| case | " + " | ".join(f"{w} proc." for w in WORLDS) + " |")
    print("|---|" + "---|" * len(WORLDS))
    for kind in ("logits", "linear"):
        for dtype in ("float32", "float64"):
            name = f"{kind}-{dtype}-confident_rows"
            cells = []
            for w in WORLDS:
                ulps = [max(rep[name]["max_rel_ulps"], rep[name].get("target_grad_rel_ulps", 0.0)) for rep in runs[w]]
                cells.append(f"{max(ulps):.1f}")
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
