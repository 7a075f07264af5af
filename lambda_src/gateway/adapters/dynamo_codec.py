"""DynamoDB attribute values <-> plain values, without importing boto3 (cold start); and the one mapping
of a failing DynamoDB call to the gateway's answer (fail closed: 503)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from decimal import Decimal
from typing import Any

from gateway.domain.errors import ServiceUnavailableError


async def guarded(call: Awaitable[Any], what: str) -> Any:
    """DynamoDB unreachable or failing: refuse (fail closed) with a 503 rather than a bare 500."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return await call
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailableError(f"{what} is unavailable ({type(exc).__name__})") from exc



def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attr(v) for k, v in item.items()}


def from_attr(value: Mapping[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        number = Decimal(raw)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "L":
        return [from_attr(v) for v in raw]
    if kind == "M":
        return from_item(raw)
    if kind in ("SS", "NS"):
        return sorted(from_attr({kind[0]: v}) for v in raw)
    if kind == "B":
        return raw
    raise ValueError(f"unsupported DynamoDB type {kind}")


def to_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attr(v) for k, v in item.items()}


def to_attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float, Decimal)):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": to_item(value)}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("DynamoDB numbers must be finite")
        return repr(value) if value != int(value) else str(int(value))
    return str(value)
