"""Shared by the tenancy tests that talk to a moto server directly (no app): a moto server on an
ephemeral port per xdist worker, and fresh tables (from stacks/definitions.py) plus a Cognito pool
per test, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from gateway.settings import Settings

from gatewayctl.local import moto_patches
from gatewayctl.target import Target
from stacks import definitions

REGION = "eu-west-1"


@dataclass
class MotoTables:
    url: str
    target: Target
    settings: Settings
    ddb: Any  # botocore client, what the adapters use

    def client(self, service: str) -> Any:
        return self.target.client(service)


def create_table(ddb: Any, name: str, definition: definitions.TableDefinition) -> None:
    keys = {definition.partition_key, definition.sort_key}
    kwargs: dict[str, Any] = {}
    for index in definition.indexes:
        keys |= {index.partition_key, index.sort_key}
        kwargs.setdefault("GlobalSecondaryIndexes", []).append(
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        )
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in sorted(keys)],
        KeySchema=[
            {"AttributeName": definition.partition_key, "KeyType": "HASH"},
            {"AttributeName": definition.sort_key, "KeyType": "RANGE"},
        ],
        **kwargs,
    )
    if definition.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
        )


@pytest.fixture(scope="session")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_tables(moto_url, monkeypatch) -> MotoTables:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    suffix = uuid.uuid4().hex[:8]
    tenants, usage = f"tenants-{suffix}", f"usage-{suffix}"
    target = Target(kind="local", region=REGION, outputs={}, endpoint_url=moto_url)
    ddb_boto3 = target.client("dynamodb")
    create_table(ddb_boto3, tenants, definitions.TENANTS)
    create_table(ddb_boto3, usage, definitions.USAGE)
    cognito = target.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName=f"pool-{suffix}")["UserPool"]["Id"]
    cognito.create_resource_server(
        UserPoolId=pool,
        Identifier="gateway",
        Name="gateway",
        Scopes=[{"ScopeName": "invoke", "ScopeDescription": "x"}],
    )
    target.outputs.update(
        TenantsTableName=tenants, UsageTableName=usage, UserPoolId=pool, InvokeScope="gateway/invoke"
    )
    settings = Settings(
        env="test",
        region=REGION,
        tenants_table=tenants,
        usage_table=usage,
        audit_stream="unused",
        audit_dlq_url="unused",
        bedrock_regions={"us": ("us-east-1",), "eu": ("eu-west-1",)},
        principal_cache_ttl_seconds=30.0,
    )
    return MotoTables(url=moto_url, target=target, settings=settings, ddb=_botocore_client(moto_url))


def _botocore_client(url: str) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=64, retries={"max_attempts": 2, "mode": "standard"}),
    )


# moto's DynamoDB made atomic per request, as the local stack runs it.
serialize_moto_dynamodb = moto_patches.serialize_dynamodb
