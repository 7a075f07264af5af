"""What remains of a person after `gdpr erase`, where, for how long, and whether it can be linked back.

Each entry is read from the target where the target can say (Object Lock and lifecycle of the audit
bucket, the stream's and the DLQ's retention, point-in-time recovery of the tables, the function's
log retention, the access-token validity); what cannot be read says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stacks.audit_queries import ACCESS_LOG_FORMAT
from stacks.definitions import ACCESS_LOGS_PREFIX, AUDIT_RECORDS_PREFIX

PRINCIPAL_CACHE_SECONDS = 30  # the gateway's default PRINCIPAL_CACHE_TTL_SECONDS
UNLINKABLE = "no: the pseudonym secret is deleted, so nothing can recompute the pseudonym"


def after_erasure(target: Any, *, kind: str) -> list[dict[str, str]]:
    """The structured list `gdpr erase` reports: store, what, holds, kept_for, linkable."""
    outputs = target.outputs
    bucket = outputs.get("AuditBucketName")
    records_kept = _bucket_retention(target, bucket, AUDIT_RECORDS_PREFIX)
    client_info = [f for f in ("source_ip", "user_agent") if f in ACCESS_LOG_FORMAT]
    backups = _backup_window(target)
    return [
        {
            "store": f"S3 {bucket}/{AUDIT_RECORDS_PREFIX}",
            "what": "audit records (immutable)",
            "holds": "the pseudonym, request and response hashes, model, tokens, cost, times, status; "
            "no prompt or completion text, no principal id",
            "kept_for": records_kept,
            "linkable": UNLINKABLE,
        },
        {
            "store": f"S3 {bucket}/{AUDIT_RECORDS_PREFIX}",
            "what": "source IP and user agent in those audit records",
            "holds": "source_ip, user_agent",
            "kept_for": records_kept,
            "linkable": "pseudonymised under the principal's secret (now deleted: unlinkable) or not "
            "recorded at all, as the tenant's setting says",
        },
        {
            "store": f"S3 {bucket}/{ACCESS_LOGS_PREFIX}",
            "what": "API access logs (immutable)",
            "holds": ", ".join(ACCESS_LOG_FORMAT) + "; no principal or client id",
            "kept_for": _bucket_retention(target, bucket, ACCESS_LOGS_PREFIX),
            "linkable": ("no principal id; " + " and ".join(client_info) + " identify a device, not the principal")
            if client_info
            else "no: no principal id, client id, IP or user agent",
        },
        {
            "store": f"Kinesis {outputs.get('AuditStreamName')}",
            "what": "audit records on their way to the bucket",
            "holds": "the same records as the bucket",
            "kept_for": _stream_retention(target),
            "linkable": UNLINKABLE,
        },
        {
            "store": f"SQS {outputs.get('AuditDlqUrl')}",
            "what": "audit records that failed delivery (dead-lettered)",
            "holds": "the same records as the bucket",
            "kept_for": _queue_retention(target),
            "linkable": UNLINKABLE,
        },
        {
            "store": "DynamoDB point-in-time recovery",
            "what": "the deleted principal item (with its pseudonym secret) and usage windows, in backups",
            "holds": "principal id, tenant, roles, display name, pseudonym secret; usage counters",
            "kept_for": backups,
            "linkable": "yes, until the window has passed, by restoring a backup from before the erasure: "
            "a restore must re-apply the erasure"
            if "up to" in backups or backups.startswith("unknown")
            else "no: there are no backups",
        },
        {
            "store": f"CloudWatch Logs {_log_group(target) or '(the gateway function log group)'}",
            "what": "the gateway's log lines",
            "holds": "request lines (tenant, request id; no principal id); an audit record that reached "
            "neither stream nor DLQ (pseudonym, source IP, user agent); a failed quota adjustment's usage "
            "key, which holds the principal id",
            "kept_for": _log_retention(target),
            "linkable": "only the failed quota adjustment lines name the principal id",
        },
        {
            "store": f"Cognito {outputs.get('UserPoolId')}",
            "what": "the user and its attributes are deleted"
            if kind == "user"
            else "the app client is deleted, with its secret",
            "holds": "access tokens issued before the erasure",
            "kept_for": f"until they expire ({_token_validity(target)}); the gateway refuses them once its "
            f"principal cache ({PRINCIPAL_CACHE_SECONDS} s by default) no longer holds the principal",
            "linkable": "the token names the sub (or client id), whose principal no longer exists",
        },
    ]


def _read(call: Callable[[], str]) -> str:
    """A retention read from the target, or why it could not be read."""
    try:
        return call()
    except Exception as exc:  # missing permission, a resource the target does not have, ...
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return f"unknown ({code or type(exc).__name__})"


def _bucket_retention(target: Any, bucket: str | None, prefix: str) -> str:
    if not bucket:
        return "unknown (no audit bucket output)"

    def read() -> str:
        s3 = target.client("s3")
        rule = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"].get("Rule", {})
        retention = rule.get("DefaultRetention", {})
        period = f"{retention['Days']} days" if "Days" in retention else f"{retention.get('Years', '?')} years"
        lock = f"Object Lock {retention.get('Mode', '?')} for {period}" if retention else "no Object Lock retention"
        return f"{lock}; {_expiry(s3, bucket, prefix)}"

    return _read(read)


def _expiry(s3: Any, bucket: str, prefix: str) -> str:
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return "no lifecycle expiry (kept until deleted)"
        raise
    for rule in rules:
        scope = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
        if rule.get("Status") == "Enabled" and prefix.startswith(scope) and "Days" in rule.get("Expiration", {}):
            return f"expired by lifecycle after {rule['Expiration']['Days']} days"
    return "no lifecycle expiry (kept until deleted)"


def _stream_retention(target: Any) -> str:
    def read() -> str:
        summary = target.client("kinesis").describe_stream_summary(StreamName=target.outputs["AuditStreamName"])
        return f"{summary['StreamDescriptionSummary']['RetentionPeriodHours']} hours"

    return _read(read)


def _queue_retention(target: Any) -> str:
    def read() -> str:
        attributes = target.client("sqs").get_queue_attributes(
            QueueUrl=target.outputs["AuditDlqUrl"], AttributeNames=["MessageRetentionPeriod"]
        )["Attributes"]
        return f"{int(attributes['MessageRetentionPeriod']) // 86400} days"

    return _read(read)


def _backup_window(target: Any) -> str:
    def read() -> str:
        ddb = target.client("dynamodb")
        windows = []
        for key in ("TenantsTableName", "UsageTableName"):
            backups = ddb.describe_continuous_backups(TableName=target.outputs[key])["ContinuousBackupsDescription"]
            pitr = backups.get("PointInTimeRecoveryDescription", {})
            if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
                windows.append(f"{target.outputs[key]}: up to {pitr.get('RecoveryPeriodInDays', 35)} days")
            else:
                windows.append(f"{target.outputs[key]}: none (point-in-time recovery is off)")
        return "; ".join(windows)

    return _read(read)


def _log_group(target: Any) -> str | None:
    if target.kind == "local":
        return None
    function = target.outputs.get("GatewayFunctionName")
    if not function:
        return None
    try:
        config = target.client("lambda").get_function_configuration(FunctionName=function)
    except Exception:  # the report still says where to look
        return f"/aws/lambda/{function}"
    return config.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{function}"


def _log_retention(target: Any) -> str:
    if target.kind == "local":
        log_dir = target.local.get("log_dir")
        return f"the local stack logs to files{f' in {log_dir}' if log_dir else ''}, kept until deleted"
    group = _log_group(target)
    if not group:
        return "unknown (no gateway function output)"

    def read() -> str:
        found = target.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        days = next((g.get("retentionInDays") for g in found if g["logGroupName"] == group), None)
        return f"{days} days" if days else "never expires (no retention set)"

    return _read(read)


def _token_validity(target: Any) -> str:
    def read() -> str:
        client = target.client("cognito-idp").describe_user_pool_client(
            UserPoolId=target.outputs["UserPoolId"], ClientId=target.outputs["UserPoolClientId"]
        )["UserPoolClient"]
        if "AccessTokenValidity" not in client:
            return "at most 60 minutes, the Cognito default"
        unit = client.get("TokenValidityUnits", {}).get("AccessToken", "hours")  # Cognito's default unit
        return f"at most {client['AccessTokenValidity']} {unit}"

    return _read(read)
