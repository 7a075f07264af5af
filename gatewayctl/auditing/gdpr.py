"""GDPR: export everything held on a principal; erase everything mutable that names them.

The audit trail names people only by pseudonym (an HMAC of the principal id under a per-principal
secret in the tenants table). Export recomputes the pseudonym and queries the trail by it; erase
deletes the Cognito user (or a machine principal's app client), the principal's usage windows and
last the secret, so the immutable trail stays but can no longer be linked to the person.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.domain.pseudonym import pseudonym
from gateway.models import tenant_items, usage_items

from gatewayctl.admin import directory
from gatewayctl.admin.dynamo import from_item, to_item
from gatewayctl.auditing.objects import AuditError
from gatewayctl.auditing.query import QueryFn, query_for
from gatewayctl.auditing.remains import after_erasure
from stacks.audit_queries import NAMED_QUERIES


def principal_key(principal_id: str) -> dict[str, Any]:
    """The principal item's key, typed for the DynamoDB API."""
    return to_item(tenant_items.principal_key(principal_id))


def export_principal(target: Any, who: str) -> dict[str, Any]:
    """Export by principal id, or by a person's Cognito user name or e-mail."""
    principal_id = directory.resolve(target, who)
    return gdpr_export(
        target.client("dynamodb"), target.output("TenantsTableName"), principal_id, query_for(target)
    )


def erase_principal(target: Any, who: str) -> dict[str, Any]:
    """Erase by principal id, or by a person's Cognito user name or e-mail; the report says what
    was deleted and what remains (gatewayctl/auditing/remains.py)."""
    principal_id = directory.resolve(target, who)  # checks `who` before any call
    report = gdpr_erase(
        target.client("dynamodb"),
        target.client("cognito-idp"),
        tenants_table=target.output("TenantsTableName"),
        usage_table=target.output("UsageTableName"),
        user_pool_id=target.output("UserPoolId"),
        principal_id=principal_id,
    )
    report["remains"] = after_erasure(target, kind=report["kind"])
    return report


def gdpr_export(ddb: Any, tenants_table: str, principal_id: str, query: QueryFn) -> dict[str, Any]:
    """Everything the gateway holds on a person: the principal's data and their audit records."""
    got = ddb.get_item(TableName=tenants_table, Key=principal_key(principal_id), ConsistentRead=True)
    item = from_item(got["Item"]) if "Item" in got else None
    secret = item.get("pseudonym_secret") if item else None
    if not item or not secret:
        return {
            "principal_id": principal_id,
            "principal": None,
            "pseudonym": None,
            "records": [],
            "note": "no pseudonym secret (unknown or erased principal): no audit record links to them",
        }
    alias = pseudonym(secret, principal_id)
    _, sql = NAMED_QUERIES["principal_records"]
    result = query(sql, [item["tenant_id"], alias])
    data = {k: v for k, v in item.items() if k not in ("pk", "sk", "pseudonym_secret")}
    return {
        "principal_id": principal_id,
        "principal": data,
        "pseudonym": alias,
        "records": [_jsonable(r) for r in result.dicts()],
    }


def gdpr_erase(
    ddb: Any, cognito: Any, *, tenants_table: str, usage_table: str, user_pool_id: str, principal_id: str
) -> dict[str, Any]:
    """Delete everything mutable that names the principal; the audit trail (immutable) is not touched.

    Looks everything up first and writes nothing for an unknown principal (AuditError). Then, in
    this order: the Cognito identity (a person: global sign-out, then the user; a machine: its app
    client), the principal's usage windows, and last the principal item with the secret. A run cut
    short leaves the principal item, so running erase again finishes the job; what is already gone
    is skipped. `deleted` lists exactly what this run deleted.
    """
    got = ddb.get_item(TableName=tenants_table, Key=principal_key(principal_id), ConsistentRead=True)
    item = from_item(got["Item"]) if "Item" in got else None
    kind = item.get("kind", "user") if item else "user"
    tenant_id = item.get("tenant_id") if item else None
    # Only a registered client principal's app client is deleted: an id that is not one (the
    # stack's own app clients, say) never reaches DeleteUserPoolClient.
    usernames = cognito_usernames(cognito, user_pool_id, principal_id) if kind == "user" else []
    if not item and not usernames:
        raise AuditError(f"no principal {principal_id!r} (unknown, or already erased): nothing deleted")

    deleted: list[dict[str, str]] = []
    if kind == "client" and _gone_if_missing(
        cognito.delete_user_pool_client, UserPoolId=user_pool_id, ClientId=principal_id
    ):
        deleted.append({"store": "cognito", "what": "app client", "id": principal_id})
    for username in usernames:
        # Sign-out needs the user, so it comes first: it revokes the user's refresh tokens (no new
        # access tokens). Access tokens already issued stay valid JWTs until they expire (docs/audit.md).
        _gone_if_missing(cognito.admin_user_global_sign_out, UserPoolId=user_pool_id, Username=username)
        if _gone_if_missing(cognito.admin_delete_user, UserPoolId=user_pool_id, Username=username):
            deleted.append({"store": "cognito", "what": "user (after global sign-out)", "id": username})
    if tenant_id:
        pk = usage_items.principal_pk(tenant_id, principal_id)
        for page in ddb.get_paginator("query").paginate(
            TableName=usage_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="pk, sk",
        ):
            for usage in page.get("Items", []):
                ddb.delete_item(TableName=usage_table, Key={"pk": usage["pk"], "sk": usage["sk"]})
                deleted.append({"store": "dynamodb", "what": "usage window", "id": f"{pk} {usage['sk']['S']}"})
    if item:
        # The principal item holds the secret: deleting it makes every pseudonym of this person unlinkable.
        ddb.delete_item(TableName=tenants_table, Key=principal_key(principal_id))
        deleted.append({"store": "dynamodb", "what": "principal and pseudonym secret", "id": principal_id})
    return {"principal_id": principal_id, "kind": kind, "tenant_id": tenant_id, "erased": True, "deleted": deleted}


def cognito_usernames(cognito: Any, user_pool_id: str, sub: str) -> list[str]:
    """The usernames of the pool's users whose `sub` is this id (one, or none)."""
    found: list[str] = []
    for page in cognito.get_paginator("list_users").paginate(
        UserPoolId=user_pool_id, Filter=f'sub = "{sub}"', AttributesToGet=["sub"]
    ):
        found += [user["Username"] for user in page.get("Users", [])]
    return found


def _gone_if_missing(call: Callable[..., Any], **kwargs: Any) -> bool:
    """Run a Cognito delete; False when the thing was already gone (a second run, a race)."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("UserNotFoundException", "ResourceNotFoundException"):
            return False
        raise
    return True


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))
