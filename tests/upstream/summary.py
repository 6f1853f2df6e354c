"""Per-suite summary of the frameworks' own tests run against ours: ``python tests/upstream/summary.py``.

Runs the Keras, optax and scikit-learn upstream modules of this directory
(pytest, two workers) and prints, per suite: upstream tests selected, how many
pass with the original implementation, how many with ours, and the by-design
differences (xfail on ours, with their reasons).  The Keras rows count the
TensorFlow-backend process; its JAX and PyTorch reruns are the two
``test_other_backend`` items (each a whole rerun, reported on its own line).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SUITES = {"keras": "test_keras_losses.py", "optax": "test_optax_losses.py", "sklearn": "test_sklearn_metrics.py"}


def _impl(classname: str, name: str) -> str | None:
    for impl in ("original", "ours"):
        if classname.endswith(f"_{impl}") or name.endswith(f"-{impl}]") or name.endswith(f"[{impl}]"):
            return impl
    return None


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        files = [os.path.join(HERE, f) for f in SUITES.values()]
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                            f"--junitxml={xml}", *files], cwd=ROOT, capture_output=True, text=True)
        tree = ET.parse(xml)
    rows = collections.defaultdict(collections.Counter)
    reasons, other = {}, []
    for case in tree.iter("testcase"):
        suite = next(s for s, f in SUITES.items() if f[:-3] in case.get("classname", ""))
        impl = _impl(case.get("classname", ""), case.get("name", ""))
        outcome = "passed"
        for child in case:
            if child.tag == "skipped" and child.get("type") == "pytest.xfail":
                outcome = "xfail"
                reasons[(suite, case.get("name"))] = child.get("message", "")
            elif child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        if impl is None or case.get("name", "").startswith("test_harness_swaps"):
            other.append((suite, case.get("name"), outcome))
            continue
        rows[(suite, impl)][outcome] += 1
    print("| suite | upstream tests selected | pass with the original | pass with ours | by-design differences |")
    print("|---|---|---|---|---|")
    for suite in SUITES:
        o, u = rows[(suite, "original")], rows[(suite, "ours")]
        print(f"| {suite} | {sum(o.values())} | {o['passed']} | {u['passed']} | {u['xfail']} |")
    for (suite, name), why in sorted(reasons.items()):
        print(f"- {suite} `{name}`: {why}")
    bad = [(s, n, o) for s, n, o in other if o != "passed"]
    print(f"harness checks and reruns: {len(other)} items, {len(other) - len(bad)} passed", *bad, sep="\n")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
