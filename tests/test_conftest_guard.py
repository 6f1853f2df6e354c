"""The skip→failure guard itself: run a skipping test in a subprocess."""

import subprocess
import sys
import textwrap


def test_skip_becomes_failure_under_require_all(tmp_path):
    (tmp_path / "conftest.py").write_text(open(__file__.replace("test_conftest_guard.py", "conftest.py")).read())
    (tmp_path / "test_x.py").write_text(textwrap.dedent("""
        import pytest
        def test_skips():
            pytest.skip("reference missing")
    """))
    env = {"CROSSENTROPY_REQUIRE_ALL": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout
    assert "1 failed" in r.stdout
    env.pop("CROSSENTROPY_REQUIRE_ALL")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout
