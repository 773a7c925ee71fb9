"""A loopback S3-compatible server (moto) standing in for S3 in the demo and the tests."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

from etl.io.objects import s3_client, split_s3

log = logging.getLogger(__name__)

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def local_s3(uris: tuple[str, ...] = ()) -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 (a free port), create the buckets of `uris`, yield the endpoint URL."""
    from moto.server import ThreadedMotoServer

    for key, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client = s3_client(endpoint)
        for bucket in sorted({split_s3(u)[0] for u in uris if u}):
            client.create_bucket(Bucket=bucket)
        log.info("local S3 server on %s (buckets: %s)", endpoint, ", ".join(split_s3(u)[0] for u in uris if u))
        yield endpoint
    finally:
        server.stop()
