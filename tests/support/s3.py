"""A local S3 for tests: moto's server on 127.0.0.1, started and stopped by the test itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["MotoS3", "moto_s3"]


@dataclass(frozen=True)
class MotoS3:
    """A running moto S3 endpoint and the fsspec ``storage_options`` that reach it."""

    endpoint_url: str

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": "us-east-1"},
            "skip_instance_cache": True,
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """Start moto's S3 server on a free port of 127.0.0.1; stop it on exit."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
