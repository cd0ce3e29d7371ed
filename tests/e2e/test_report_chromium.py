"""The monitoring report renders its plots in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from raypipe.monitoring.drift import detect_drift
from raypipe.monitoring.model_monitor import MonitorSpec, run_model_monitoring
from raypipe.monitoring.report import render_html

CHROMIUM = next(
    (
        p
        for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
        if p and Path(p).exists()
    ),
    None,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (CI installs Debian's `chromium` package)",
    ),
]


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_plots_render_in_chromium(tmp_path: Path) -> None:
    from tests.unit.monitoring.test_model_monitoring import _drifted_tables, monitoring_frames

    reference, current = monitoring_frames()
    ref_t, cur_t = _drifted_tables()
    report = run_model_monitoring(
        reference, current, MonitorSpec(groups=("platform",)), drift=detect_drift(ref_t, cur_t)
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    expected = page.read_text().count('class="plot"')
    assert expected >= 6

    done = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body[^>]*>", done.stdout)
    assert body is not None, done.stdout[:500]
    plots = re.search(r'data-plots="(\d+)"', body.group(0))
    rendered = re.search(r'data-plots-rendered="(\d+)"', body.group(0))
    assert plots and rendered, body.group(0)  # the page's script ran
    assert int(plots.group(1)) == expected
    assert int(rendered.group(1)) == expected  # every plot has a non-empty box and marks
    assert done.stdout.count('data-drawn="1"') == expected

    shot = tmp_path / "report.png"
    done = _chromium(page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2400")
    assert done.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000
