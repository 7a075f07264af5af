"""The stack's AWS resources in moto, from stacks/definitions.py (the plain data the CDK stacks use too):
tables, the audit stream, its DLQ, the Object Lock audit bucket, and the user pool with its app clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewayctl.local.authorizer import issuer_for, jwks_url_for
from gatewayctl.target import OUTPUT_KEYS
from stacks import definitions

ClientFactory = Callable[[str], Any]  # service name -> a botocore client against the moto server


@dataclass
class Resources:
    outputs: dict[str, str]  # the CfnOutput keys of the stacks (gatewayctl.target.OUTPUT_KEYS)
    cognito: dict[str, str]  # pool id, client ids (and the machine client's secret), issuer, JWKS URL


def create_resources(
    client: ClientFactory,
    name: Callable[[str], str],
    *,
    region: str,
    moto_endpoint: str,
    endpoint: str = "",
    retention: tuple[str, int] = ("GOVERNANCE", 1),
) -> Resources:
    """`retention`: the audit bucket's default Object Lock (mode, days), as an environment's config gives it."""
    ddb = client("dynamodb")
    tenants = create_table(ddb, name("tenants"), definitions.TENANTS)
    usage = create_table(ddb, name("usage"), definitions.USAGE)

    stream = name("audit")
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=definitions.AUDIT_STREAM.shard_count)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})

    sqs = client("sqs")
    dlq_url = sqs.create_queue(
        QueueName=name("audit-dlq"),
        Attributes={"MessageRetentionPeriod": str(definitions.AUDIT_DLQ.retention_seconds)},
    )["QueueUrl"]
    # Nothing sends to it locally (the pump retries forever); it is here so that `audit replay-failures`
    # runs against the local stack as against the cloud.
    failures_url = sqs.create_queue(QueueName=name("audit-writer-failures"))["QueueUrl"]

    bucket = name("audit")
    create_audit_bucket(client("s3"), bucket, retention=retention)
    cognito = create_user_pool(client("cognito-idp"), name("users"), region=region, moto_endpoint=moto_endpoint)
    outputs = {
        "TenantsTableName": tenants,
        "UsageTableName": usage,
        "AuditStreamName": stream,
        "AuditDlqUrl": dlq_url,
        "AuditWriterFailuresUrl": failures_url,
        "AuditBucketName": bucket,
        # Locally the audit trail is queried with DuckDB; these name what Athena uses in the cloud.
        "GlueDatabaseName": name("audit").replace("-", "_"),
        "GlueTableName": "audit_events",
        "AthenaWorkgroupName": name("audit"),
        "UserPoolId": cognito["user_pool_id"],
        "UserPoolClientId": cognito["people_client_id"],
        "CognitoDomainUrl": "",  # moto has no hosted UI: local sign-in is by password (gatewayctl login)
        "InvokeScope": cognito["invoke_scope"],
        "ApiEndpoint": endpoint,
        "GatewayFunctionName": name("gateway"),
    }
    assert set(outputs) == set(OUTPUT_KEYS), "outputs drifted from gatewayctl.target.OUTPUT_KEYS"
    return Resources(outputs, cognito)


def create_audit_bucket(s3: Any, bucket: str, *, retention: tuple[str, int] = ("GOVERNANCE", 1)) -> None:
    spec = definitions.AUDIT_BUCKET
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=spec.object_lock)
    if spec.versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if spec.object_lock:
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": retention[0], "Days": retention[1]}},
            },
        )


def create_user_pool(idp: Any, pool_name: str, *, region: str, moto_endpoint: str) -> dict[str, str]:
    pool_def = definitions.USER_POOL
    pool_id = idp.create_user_pool(
        PoolName=pool_name,
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 8,
                "RequireUppercase": False,
                "RequireLowercase": False,
                "RequireNumbers": False,
                "RequireSymbols": False,
            }
        },
    )["UserPool"]["Id"]
    idp.create_resource_server(
        UserPoolId=pool_id,
        Identifier=pool_def.resource_server,
        Name="claude-gateway",
        Scopes=[{"ScopeName": s, "ScopeDescription": f"{s} the gateway"} for s in pool_def.scopes],
    )
    out = {
        "user_pool_id": pool_id,
        "invoke_scope": pool_def.invoke_scope,
        "issuer": issuer_for(region, pool_id),
        "jwks_url": jwks_url_for(moto_endpoint, pool_id),
    }
    for client_def in pool_def.clients:
        created = idp.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=client_def.logical_id,
            GenerateSecret=client_def.generate_secret,
            ExplicitAuthFlows=list(client_def.auth_flows),
            AllowedOAuthFlows=list(client_def.oauth_flows),
            AllowedOAuthScopes=list(client_def.oauth_scopes),
            AllowedOAuthFlowsUserPoolClient=True,
            SupportedIdentityProviders=["COGNITO"],
            CallbackURLs=[definitions.CLI_CALLBACK_URL] if "code" in client_def.oauth_flows else [],
        )["UserPoolClient"]
        key = "people" if client_def is definitions.PEOPLE_CLIENT else "machine"
        out[f"{key}_client_id"] = created["ClientId"]
        if created.get("ClientSecret"):
            out[f"{key}_client_secret"] = created["ClientSecret"]
    return out


def create_table(ddb: Any, name: str, table: definitions.TableDefinition) -> str:
    attrs = {table.partition_key, table.sort_key} | {a for i in table.indexes for a in (i.partition_key, i.sort_key)}
    kwargs: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attrs)],
        "KeySchema": [
            {"AttributeName": table.partition_key, "KeyType": "HASH"},
            {"AttributeName": table.sort_key, "KeyType": "RANGE"},
        ],
    }
    if table.indexes:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": i.name,
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": i.partition_key, "KeyType": "HASH"},
                    {"AttributeName": i.sort_key, "KeyType": "RANGE"},
                ],
            }
            for i in table.indexes
        ]
    ddb.create_table(**kwargs)
    if table.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
        )
    return name
