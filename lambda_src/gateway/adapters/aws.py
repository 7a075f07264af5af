"""AWS clients for the adapters, made once per container.

botocore rather than boto3: the resource layer is never used and its import costs cold start.
DynamoDB and Kinesis, called on every request, get the lean JSON-protocol client (aws_json.py):
botocore's interface and errors at a third of its CPU per call. Endpoints come from botocore's own
configuration (`AWS_ENDPOINT_URL` points every client at the moto server in the local stack and the
tests), so no adapter knows where it runs.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

_lock = threading.Lock()
# Called on every request: the lean client (aws_json.py) rather than botocore's.
JSON_SERVICES = ("dynamodb", "kinesis")


@cache
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def client(service: str, region: str, *, endpoint_url: str | None = None, **config: Any) -> Any:
    """A client; `config` as botocore.config.Config takes it (timeouts, retries, pool size). DynamoDB and
    Kinesis get the lean JSON-protocol client (aws_json.py), with the same methods, retries and errors."""
    options = {"retries": {"max_attempts": 2, "mode": "standard"}, "max_pool_connections": 64, **config}
    if service in JSON_SERVICES:
        from gateway.adapters.aws_json import JsonClient

        retries = options["retries"]
        return JsonClient(
            service,
            region,
            credentials=credentials(),
            endpoint_url=endpoint_url,
            connect_timeout=options.get("connect_timeout", 60),
            read_timeout=options.get("read_timeout", 60),
            # botocore's max_attempts counts retries; total_max_attempts counts the first try too.
            max_attempts=retries.get("total_max_attempts") or retries.get("max_attempts", 2) + 1,
            max_pool_connections=options["max_pool_connections"],
        )
    return botocore_client(service, region, endpoint_url=endpoint_url, **options)


def botocore_client(service: str, region: str, *, endpoint_url: str | None = None, **options: Any) -> Any:
    from botocore.config import Config

    # Creating clients from one session is not thread safe; adapters may build theirs lazily in threads.
    with _lock:
        return _session().create_client(
            service, region_name=region, endpoint_url=endpoint_url, config=Config(**options)
        )


def credentials() -> Any:
    """The container's AWS credentials (botocore's chain: the Lambda role's, or the environment's); None if none."""
    return _session().get_credentials()


def dynamodb(region: str) -> Any:
    """The container's one DynamoDB client, shared by the tenant and quota stores.

    Short timeouts (botocore's default is 60 s): quota settlement and release run before the response
    ends, and a stuck DynamoDB call must not hold that end for minutes."""
    # Keyed by the endpoint botocore will read too: tests and the local stack start several moto servers.
    return _dynamodb(region, os.environ.get("AWS_ENDPOINT_URL"))


@cache
def _dynamodb(region: str, endpoint: str | None) -> Any:
    return client("dynamodb", region, connect_timeout=2, read_timeout=3)
