"""The HTML report: table rows, inline SVG heatmap, escaping."""

from __future__ import annotations

import numpy as np

from raypipe.features.report import correlation_svg, render_selection_html
from raypipe.features.selection import FeatureScore


def test_page_has_table_heatmap_and_escapes_names() -> None:
    scores = [FeatureScore("a<b", "kept", consensus_rank=1, selected=True),
              FeatureScore("c", "kept", consensus_rank=2),
              FeatureScore("leak", "leakage", reason="alone scores 0.999")]
    page = render_selection_html(scores, np.array([[1.0, -0.5], [-0.5, 1.0]]), ["a<b", "c"],
                                 heatmap_limit=1)
    assert page.count('<tr class="sel">') == 1 and '<tr class="leak">' in page
    assert "a&lt;b" in page and "a<b" not in page
    assert page.count("<rect") == 1  # heatmap limited to the best-ranked feature
    assert "Likely leakage" in page


def test_heatmap_colours_and_tooltips() -> None:
    svg = correlation_svg(np.array([[1.0, -1.0], [-1.0, np.nan]]), ["x", "y"])
    assert svg.count("<rect") == 4
    assert 'fill="#ff0000"' in svg and 'fill="#0000ff"' in svg and 'fill="#cccccc"' in svg
    assert "x ~ y: r = -1.000" in svg
