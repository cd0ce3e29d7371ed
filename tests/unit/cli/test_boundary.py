"""The CLI's error boundary names the option behind a library's failure, and says it once."""

from __future__ import annotations

import errno

import pyarrow as pa
import pytest

from raypipe.cli.boundary import explain, option_of
from raypipe.errors import DataError, RaypipeError, StorageError

ARGV = ["infer", "--input", "s3://bucket/in", "--output=/data/out", "--model", "m.json"]


def test_the_option_is_found_for_its_value_a_path_below_it_or_a_folder_above_it() -> None:
    assert option_of("s3://bucket/in", ARGV) == "--input"
    assert option_of("/data/out/part-0.parquet", ARGV) == "--output"
    assert option_of("/data", ARGV) == "--output"
    assert option_of("/elsewhere", ARGV) is None


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/out/x"),
            StorageError,
            "no permission to write `/data/out/x` (`--output`)",
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/out"),
            StorageError,
            "cannot create `/data/out` (`--output`): a part of it is a file",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file", "/data/out/y"),
            DataError,
            "`/data/out/y` (`--output`) not found",
        ),
        (
            pa.ArrowInvalid("Parquet magic bytes not found in footer"),
            DataError,
            "a file is not readable Parquet",
        ),
    ],
)
def test_library_failures_become_one_raypipe_error(
    error: Exception, kind: type[RaypipeError], says: str
) -> None:
    explained = explain(error, ARGV)
    assert type(explained) is kind
    assert says in explained.message
    assert explained.hint
    assert explained.__cause__ is error


def test_missing_credentials_name_every_s3_url_and_how_to_set_them() -> None:
    from botocore.exceptions import NoCredentialsError

    # As s3fs raises it: wrapped, the botocore error as its cause.
    try:
        try:
            raise NoCredentialsError()
        except NoCredentialsError as inner:
            raise OSError("could not list") from inner
    except OSError as outer:
        explained = explain(outer, ARGV)
    assert isinstance(explained, StorageError)
    assert explained.message == "no AWS credentials to read or write `s3://bucket/in` (`--input`)"
    assert explained.hint is not None and "AWS_PROFILE" in explained.hint


def test_anything_else_is_one_line_with_the_way_to_the_traceback() -> None:
    explained = explain(KeyError("x"), ARGV)
    assert explained.message == "unexpected KeyError: 'x'"
    assert explained.hint is not None and "`--debug`" in explained.hint
