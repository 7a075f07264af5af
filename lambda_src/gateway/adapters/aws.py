"""botocore clients for the adapters, made once per container.

botocore rather than boto3: the resource layer is never used and its import costs cold start.
Endpoints come from botocore's own configuration (`AWS_ENDPOINT_URL` points every client at the moto
server in the local stack and the tests), so no adapter knows where it runs.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

_lock = threading.Lock()


@cache
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def client(service: str, region: str, *, endpoint_url: str | None = None, **config: Any) -> Any:
    """A botocore client; `config` goes to botocore.config.Config (timeouts, retries, pool size)."""
    from botocore.config import Config

    # No client-side parameter validation: the adapters build every parameter themselves (tested against moto),
    # the services validate what they receive (a malformed call still fails, as a ClientError), and
    # validating a quota transaction's nested attribute values cost about a tenth of a request's CPU.
    options = {
        "retries": {"max_attempts": 2, "mode": "standard"},
        "max_pool_connections": 64,
        "parameter_validation": False,
        **config,
    }
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
