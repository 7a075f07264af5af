"""Circuit-breaker state shared across containers through the tenants table.

Item: `gateway.models.tenant_items.breaker_key(<provider>#<region>)`, with `state`, `opened_until` and `updated_at`
(epoch seconds). Writes are conditional on being newer, so a late write from a slow container never
replaces a fresher transition. Only the background refresh and fire-and-forget transition writes
call this: no request waits on it.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters import aws
from gateway.adapters.aws_loop import call
from gateway.adapters.dynamo_codec import to_item
from gateway.domain.breaker import BreakerState
from gateway.models import tenant_items
from gateway.settings import Settings


def item_key(key: str) -> dict[str, Any]:
    return to_item(tenant_items.breaker_key(key))


class DynamoBreakerStore:
    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.table = settings.tenants_table
        self.region = settings.region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb", self.region, connect_timeout=2, read_timeout=3)
        return self._client

    async def load(self, keys: list[str]) -> dict[str, BreakerState]:
        if not keys:
            return {}
        return await self._load(keys)

    async def _load(self, keys: list[str]) -> dict[str, BreakerState]:
        request = {self.table: {"Keys": [item_key(k) for k in keys], "ConsistentRead": False}}
        out: dict[str, BreakerState] = {}
        for _ in range(3):  # BatchGetItem may return unprocessed keys under load
            response = await call(self.client, "batch_get_item", RequestItems=request)
            for item in response.get("Responses", {}).get(self.table, []):
                key = tenant_items.breaker_name(item["pk"]["S"])
                out[key] = BreakerState(
                    state="open" if item.get("state", {}).get("S") == "open" else "closed",
                    opened_until=float(item.get("opened_until", {}).get("N", "0")),
                    updated_at=float(item.get("updated_at", {}).get("N", "0")),
                )
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        return out

    async def save(self, key: str, state: BreakerState) -> None:
        await self._save(key, state)

    async def _save(self, key: str, state: BreakerState) -> None:
        from botocore.exceptions import ClientError

        try:
            await call(
                self.client,
                "put_item",
                TableName=self.table,
                Item={
                    **item_key(key),
                    "state": {"S": state.state},
                    "opened_until": {"N": repr(state.opened_until)},
                    "updated_at": {"N": repr(state.updated_at)},
                },
                ConditionExpression="attribute_not_exists(pk) OR updated_at < :u",
                ExpressionAttributeValues={":u": {"N": repr(state.updated_at)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise  # logged by the background runner; a newer state is already stored otherwise
