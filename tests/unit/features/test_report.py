"""The HTML report: table rows, inline SVG heatmap, escaping."""

from __future__ import annotations

import numpy as np

from raypipe.features.report import correlation_svg, render_selection_html
from raypipe.features.selection import FeatureScore


def test_page_has_table_heatmap_and_escapes_names() -> None:
    scores = [
        FeatureScore("a<b", "kept", consensus_rank=1, selected=True),
        FeatureScore("c", "kept", consensus_rank=2),
        FeatureScore("leak", "leakage", reason="alone scores 0.999"),
    ]
    page = render_selection_html(
        scores, np.array([[1.0, -0.5], [-0.5, 1.0]]), ["a<b", "c"], heatmap_limit=1
    )
    assert page.count('<tr class="sel">') == 1 and '<tr class="leak">' in page
    assert "a&lt;b" in page and "a<b" not in page
    heatmap = page[page.index("<h2>Correlation") :]
    assert heatmap.count("<rect") == 1  # heatmap limited to the best-ranked feature
    assert "Likely leakage" in page


def test_score_charts_show_the_best_features_with_labelled_axes() -> None:
    scores = [
        FeatureScore(
            f"f{i}",
            "kept",
            mutual_information=i / 100,
            consensus_rank=i,
            single_feature_score=0.5 + i / 100,
            selected=i >= 20,
        )
        for i in range(25)
    ]
    page = render_selection_html(scores, np.eye(2), ["f0", "f1"])
    charts = page[page.index("Selection scores") : page.index("<h2>Importance")]
    assert "mutual information with the label (top 20 of 25 features)" in charts
    assert "score of the feature alone (top 20 of 25 features)" in charts
    assert "|L1 coefficient|" not in charts  # no feature has one: no empty chart
    assert charts.count('class="bar"') == 40
    first = charts[charts.index("mutual information with the label") :]
    assert first.index(">f24 *<") < first.index(">f23 *<") < first.index(">f5<")
    assert ">f4<" not in first[: first.index("</svg>")]  # below the top 20
    assert charts.count("x-label") == charts.count("y-label") == 2


def test_heatmap_colours_and_tooltips() -> None:
    svg = correlation_svg(np.array([[1.0, -1.0], [-1.0, np.nan]]), ["x", "y"])
    assert svg.count("<rect") == 4
    assert 'fill="#ff0000"' in svg and 'fill="#0000ff"' in svg and 'fill="#cccccc"' in svg
    assert "x ~ y: r = -1.000" in svg
