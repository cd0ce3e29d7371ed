"""A presigned ingest URL is read with its signature, and no record keeps the signature."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import DataError
from raypipe.ingest.stage import IngestOptions, IngestStage
from raypipe.io.dataset import read_dataset
from raypipe.stages.base import StageContext

SCHEMA = {"id": "int64", "name": "string", "score": "float64", "day": "date"}
SIGNATURE = "X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00dfeed"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _run(tmp_path: Path, source: str, **options: object) -> StageContext:
    context = StageContext(
        stage_name="raw", data_dir=str(tmp_path / "data"), run_id="r1", backend=InlineBackend()
    )
    stage_options = IngestOptions.model_validate({"schema": SCHEMA, "source": source, **options})
    IngestStage().run(context, {}, stage_options)
    return context


def test_presigned_url_is_read_but_not_recorded(
    tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    (root / "a.csv").write_text("id,name,score,day\n1,ann,0.5,2024-01-01\n2,bob,lots,2024-01-02\n")
    context = _run(tmp_path, f"{base}/a.csv?{SIGNATURE}", on_bad_rows="quarantine")
    assert read_dataset(context.output_url("data"))["id"].to_pylist() == [1]
    bad = read_dataset(context.output_url("quarantine")).to_pylist()
    assert bad[0]["source_file"] == f"{base}/a.csv"
    written = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert b"f00dfeed" not in written and b"AKIAEXAMPLE" not in written
    assert f"{base}/a.csv".encode() in written  # the manifests still say what was read


def test_bad_row_error_names_the_file_without_its_signature(
    tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    (root / "a.csv").write_text("id,name,score,day\n1,ann,lots,2024-01-01\n")
    with pytest.raises(DataError) as info:
        _run(tmp_path, f"{base}/a.csv?{SIGNATURE}")
    assert f"`{base}/a.csv?X-Amz-Credential=***&X-Amz-Signature=***` line 2" in str(info.value)
    assert "f00dfeed" not in str(info.value)
