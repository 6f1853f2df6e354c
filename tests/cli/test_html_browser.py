"""The HTML report, opened in a real headless browser (Debian's chromium): it shows its charts and tables.

The page is rendered twice: ``--dump-dom`` gives the DOM the browser built
(charts, series, bars and table rows are counted), and ``--screenshot`` gives
the pixels (the colours of the charts must be on screen, in the plot area).
``.ci/run`` installs chromium; without it (outside CI) the test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from clihelpers import make_multiclass, write_csv

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install -y chromium; .ci/run does)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def _browser(tmp_path, html, *args):
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [BROWSER, *FLAGS, f"--user-data-dir={profile}", *args, f"file://{html}"]
    return subprocess.run(cmd, capture_output=True, timeout=180, cwd=tmp_path)


def _png_pixels(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _near(img, rgb, tol=18):
    return int(np.count_nonzero(np.all(np.abs(img - np.array(rgb)) <= tol, axis=-1)))


def test_single_report_shows_charts_and_tables(cli, tmp_path):
    r = cli("score", "--format", "html", "-o", "report.html")
    assert r.rc == 0, r.err
    html = tmp_path / "report.html"
    dom = _browser(tmp_path, html, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.decode("utf-8")
    # The browser built every chart and table.
    for ident in ("plot-reliability", "plot-histogram", "plot-roc", "plot-confusion"):
        assert re.search(rf'<svg[^>]*id="{ident}"', text), ident
    assert len(re.findall(r'class="bar"', text)) >= 7 + 20  # reliability bins + histogram bars
    assert len(re.findall(r'class="series"', text)) >= 10  # a ROC curve per class (+ the reliability line)
    assert len(re.findall(r'class="cell"', text)) == 100  # 10 x 10 confusion cells
    summary = re.search(r'<table id="summary">(.*?)</table>', text, re.S).group(1)
    assert summary.count("<tr>") >= 12 and "0.1140 nats" in summary
    per_class = re.search(r'<table id="per-class">(.*?)</table>', text, re.S).group(1)
    assert per_class.count("<tr>") == 11
    # The pixels: the charts' colours are on the screen, below the summary table.
    shot = tmp_path / "shot.png"
    out = _browser(tmp_path, html, f"--screenshot={shot}", "--window-size=1200,2600")
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    img = _png_pixels(shot)
    h, w, _ = img.shape
    assert (h, w) == (2600, 1200)
    non_white = np.count_nonzero(np.any(img < 235, axis=-1)) / (h * w)
    assert 0.03 < non_white < 0.6, non_white
    assert _near(img, (103, 135, 188)) > 5000  # reliability bars (#4c72b0 at 85% over white)
    assert _near(img, (135, 115, 151)) > 500  # calibration gaps (#c44e52 at 35% over the bars)
    assert _near(img, (85, 168, 104)) > 800  # histogram bars (#55a868)
    assert _near(img, (40, 90, 160), tol=12) > 2000  # confusion matrix diagonal
    rows = np.flatnonzero(_row_has(img, (85, 168, 104)))
    assert rows.size and rows.min() > 300, "the histogram sits below the summary"


def _row_has(img, rgb, tol=18):
    return np.any(np.all(np.abs(img - np.array(rgb)) <= tol, axis=-1), axis=1)


def test_comparison_report_overlays_the_models(cli, tmp_path):
    p, _, y = make_multiclass(n=400, k=2, seed=41)
    a = write_csv(tmp_path / "a.csv", y, p[:, 1], prefix="p")
    flat = np.clip(0.5 + (p[:, 1] - 0.5) * 0.3, 0, 1)
    b = write_csv(tmp_path / "b.csv", y, flat, prefix="p")
    r = cli("score", a, b, "--format", "html", "-o", "cmp.html", "--replicates", "100")
    assert r.rc == 0, r.err
    html = tmp_path / "cmp.html"
    dom = _browser(tmp_path, html, "--dump-dom").stdout.decode("utf-8")
    roc = re.search(r'<svg[^>]*id="plot-roc".*?</svg>', dom, re.S).group(0)
    assert len(re.findall(r'class="series"', roc)) == 2
    diffs = re.search(r'<table id="differences">(.*?)</table>', dom, re.S).group(1)
    assert "b.csv" in diffs and diffs.count("<tr>") == 2
    shot = tmp_path / "cmp.png"
    assert _browser(tmp_path, html, f"--screenshot={shot}", "--window-size=1200,1400").returncode == 0
    img = _png_pixels(shot)
    assert _near(img, (76, 114, 176)) > 200 and _near(img, (221, 132, 82)) > 200  # both models' lines
    assert os.path.getsize(shot) > 20000
