"""No secret leaves: URLs in records, log lines and hints are redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from raypipe.driver.record import OutputRecord, RunRecord, StageRecord, StageStatus
from raypipe.redaction import (
    RedactingFilter,
    redact_record,
    redact_text,
    redact_url,
    strip_query,
)

SECRET_DB = "postgresql://alice:pw-s3cret@db.internal:5432/mlflow"
PRESIGNED = (
    "https://bucket.s3.amazonaws.com/raw/a.csv"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00dfeed"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SECRET_DB, "postgresql://alice:***@db.internal:5432/mlflow"),
        ("https://ghp_token@github.com/org/repo", "https://***@github.com/org/repo"),
        (
            PRESIGNED,
            "https://bucket.s3.amazonaws.com/raw/a.csv"
            "?X-Amz-Algorithm=***&X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("s3://bucket/key/part-0.parquet", "s3://bucket/key/part-0.parquet"),
        ("sqlite:////tmp/data/mlflow.db", "sqlite:////tmp/data/mlflow.db"),
        ("/plain/local/path", "/plain/local/path"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_strip_query_keeps_the_object_not_the_signature() -> None:
    assert strip_query(PRESIGNED) == "https://bucket.s3.amazonaws.com/raw/a.csv"
    assert strip_query("https://u:p@h/x?a=1#f") == "https://u:***@h/x"


def test_redact_text_finds_urls_inside_sentences() -> None:
    text = f"cannot reach `{SECRET_DB}` (read {PRESIGNED}), retrying"
    redacted = redact_text(text)
    assert "pw-s3cret" not in redacted and "f00dfeed" not in redacted and "AKIA" not in redacted
    assert "`postgresql://alice:***@db.internal:5432/mlflow`" in redacted
    assert redacted.endswith("), retrying")


def test_redact_record_walks_nested_values_and_keeps_other_types() -> None:
    record = {"a": [SECRET_DB, {"b": (PRESIGNED, 3)}], "n": 1.5, "ok": None}
    out = redact_record(record)
    assert "pw-s3cret" not in json.dumps(out) and "f00dfeed" not in json.dumps(out)
    assert out["n"] == 1.5 and out["ok"] is None and out["a"][1]["b"][1] == 3
    assert record["a"][0] == SECRET_DB  # the input is not changed: it may still be used


def test_run_record_json_has_no_password() -> None:
    stage = StageRecord(
        name="train",
        kind="train",
        metrics={"tracking_uri": SECRET_DB},
        inputs={"data": OutputRecord(url=PRESIGNED, version="v", rows=1)},
        error=f"could not connect to {SECRET_DB}",
    )
    record = RunRecord(
        run_id="r1",
        job="j",
        spec="job.yaml",
        data_dir="s3://bucket/x",
        raypipe_version="0",
        started_at="now",
        stages={"train": stage},
    )
    text = record.to_json()
    assert "pw-s3cret" not in text and "f00dfeed" not in text
    back = RunRecord.from_json(text)
    assert back.stages["train"].metrics["tracking_uri"] == redact_url(SECRET_DB)
    assert back.data_dir == "s3://bucket/x"


def test_log_lines_are_redacted_by_the_filter(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("raypipe.test_redaction")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("tracking at %s, source %s", SECRET_DB, PRESIGNED)
        logger.warning("nothing to hide in %s", "s3://bucket/key")
    finally:
        logger.removeHandler(handler)
    assert "pw-s3cret" not in seen[0] and "f00dfeed" not in seen[0] and "alice:***@" in seen[0]
    assert seen[1] == "nothing to hide in s3://bucket/key"


def test_printed_mlflow_ui_hint_has_no_password() -> None:
    from raypipe.cli.render import mlflow_ui_lines

    command = mlflow_ui_lines(SECRET_DB, None, "mlflow")[0]
    assert "pw-s3cret" not in command
    assert "--backend-store-uri postgresql://alice:***@db.internal:5432/mlflow" in command


def test_stage_commit_record_has_no_password(tmp_path: Path) -> None:
    from raypipe.driver.state import DriverState

    state = DriverState(str(tmp_path), "j")
    stage = StageRecord(
        name="train",
        kind="train",
        status=StageStatus.SUCCEEDED,
        metrics={"tracking_uri": SECRET_DB},
        error=f"could not connect to {SECRET_DB} then read {PRESIGNED}",
    )
    state.write_stage_commit(stage)
    text = Path(state.stage_url("train")).read_text()
    assert "pw-s3cret" not in text and "f00dfeed" not in text
    back = state.read_stage_commit("train")
    assert back is not None and back.metrics["tracking_uri"] == redact_url(SECRET_DB)


def test_monitoring_report_names_datasets_without_their_secrets() -> None:
    from raypipe.monitoring.report import MonitoringReport, render_html, report_json

    report = MonitoringReport(
        datasets={"reference": f"{PRESIGNED} (version a)", "current": "s3://b/cur (version b)"},
        metadata={"tracking": SECRET_DB},
    )
    page = render_html(report)
    document = json.dumps(report_json(report))
    for text in (page, document):
        assert "f00dfeed" not in text and "pw-s3cret" not in text and "AKIA" not in text
    assert "s3://b/cur (version b)" in document
