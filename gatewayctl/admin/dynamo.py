"""The two tables as the admin library reads and writes them: names, one client, the item codec.

Key layouts come from the runtime's contract modules (gateway.models.tenant_items, usage_items);
this module only moves plain dicts in and out of DynamoDB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from gateway.models import tenant_items

from gatewayctl.output import CommandError
from gatewayctl.target import Target

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def to_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict as a DynamoDB item (floats become exact decimal numbers)."""
    return {name: _SERIALIZER.serialize(_decimals(value)) for name, value in item.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as a plain dict: whole numbers as int, others as float, sets as sorted lists."""
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in item.items()}


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("DynamoDB numbers must be finite")
        return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decimals(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Tables:
    """The tenants and usage tables of one target, with the reads every admin operation needs."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.tenants = target.output("TenantsTableName")
        self.usage = target.output("UsageTableName")
        self.client = target.client("dynamodb")

    def get(self, table: str, key: Mapping[str, str]) -> dict[str, Any] | None:
        got = self.client.get_item(TableName=table, Key=to_item(key), ConsistentRead=True)
        return from_item(got["Item"]) if "Item" in got else None

    def query(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._paged(self.client.query, kwargs)

    def scan(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._paged(self.client.scan, kwargs)

    def tenant_partition(self, tenant_id: str, *, sk_prefix: str | None = None) -> list[dict[str, Any]]:
        """A tenant's config and role items (one Query), or only those whose sk starts with sk_prefix."""
        condition, values = "pk = :pk", {":pk": {"S": tenant_items.tenant_pk(tenant_id)}}
        if sk_prefix is not None:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        return self.query(TableName=self.tenants, KeyConditionExpression=condition, ExpressionAttributeValues=values)

    def require_tenant(self, tenant_id: str) -> dict[str, Any]:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise CommandError("a tenant id is required")
        item = self.get(self.tenants, tenant_items.tenant_key(tenant_id))
        if item is None:
            raise CommandError(f"unknown tenant {tenant_id!r}")
        return item

    def require_principal(self, principal_id: str) -> dict[str, Any]:
        item = self.get(self.tenants, tenant_items.principal_key(principal_id))
        if item is None:
            raise CommandError(f"unknown principal {principal_id!r}")
        return item

    def put_existing(self, item: dict[str, Any]) -> None:
        """Overwrite an item that must still be there (a concurrent removal wins; nothing is written)."""
        try:
            self.client.put_item(TableName=self.tenants, Item=to_item(item), ConditionExpression="attribute_exists(pk)")
        except self.client.exceptions.ConditionalCheckFailedException:
            raise CommandError(f"{item['pk']} was removed meanwhile; nothing written") from None

    def _paged(self, call: Any, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = call(**kwargs)
            items += [from_item(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}
