"""The tenants table as a TenantStore: loads principals and tenant configs (with the tenant's role
overrides, one Query on its partition). No caching and no policy here: domain/tenancy.py does both."""

from __future__ import annotations

from typing import Any

from gateway.adapters import aws
from gateway.adapters.aws_loop import call
from gateway.adapters.dynamo_codec import from_item, guarded, to_item
from gateway.models import tenant_items
from gateway.models.tenancy import PrincipalRecord, TenantConfig
from gateway.settings import Settings


class DynamoTenantStore:
    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self._table = settings.tenants_table
        self._region = settings.region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.dynamodb(self._region)
        return self._client

    async def principal(self, principal_id: str) -> PrincipalRecord | None:
        return await guarded(self._load_principal(principal_id), "the tenant directory")

    async def tenant(self, tenant_id: str) -> TenantConfig | None:
        return await guarded(self._load_tenant(tenant_id), "the tenant directory")

    async def _load_principal(self, principal_id: str) -> PrincipalRecord | None:
        key = to_item(tenant_items.principal_key(principal_id))
        got = await call(self.client, "get_item", TableName=self._table, Key=key)
        return tenant_items.principal_from_item(from_item(got["Item"])) if "Item" in got else None

    async def _load_tenant(self, tenant_id: str) -> TenantConfig | None:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": tenant_items.tenant_pk(tenant_id)}},
        }
        while True:
            page = await call(self.client, "query", **kwargs)
            items += [from_item(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return tenant_items.tenant_from_items(items)
