"""The HTML report in a real browser: headless Chromium loads it offline and draws it.

In CI (the variable CI is set) a missing Chromium fails these tests; elsewhere they
are skipped with the reason. `apt-get install -y chromium` provides it on Debian.
"""

from __future__ import annotations

from pathlib import Path

from sweep_helpers import check_page_in_browser, make_store, require_chromium, study_like_results

from harness.report import render, report_data


def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    make_store(tmp_path / "results.sqlite", study_like_results())
    page = tmp_path / "report.html"
    page.write_text(render(report_data(tmp_path), "html"))
    check_page_in_browser(page, tmp_path, bars=2 * (3 + 3 + 3 + 2 + 2) * 2 - 5)
