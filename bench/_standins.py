"""Loopback stand-ins of DynamoDB and Kinesis for the benchmarks: fast enough that their own CPU (in their
own process) does not crowd the gateway's, and they count every call, so a benchmark can state the AWS
calls per request.

One HTTP/1.1 server answers both JSON protocols by `X-Amz-Target` (botocore reaches it through
`AWS_ENDPOINT_URL`): DynamoDB (`DynamoDB_20120810.*`: GetItem, Query, BatchGetItem, PutItem, UpdateItem,
DeleteItem, TransactWriteItems, TransactGetItems) and Kinesis (`Kinesis_20131202.PutRecord`, PutRecords).
Items are kept in memory by table and key (`pk`, `sk`); writes are applied (SET, ADD, REMOVE and DELETE
update actions, with if_not_exists and + / -), so counters read back plausibly. Conditions are not
evaluated: every write succeeds, as it does for a tenant within its limits. This is not a DynamoDB
emulator (moto is, for the tests); it is the cheapest peer that keeps the gateway's adapters honest.

    python -m bench._standins           prints {"url": ...} on one line, serves until SIGTERM
    GET /_standin/calls                 {"DynamoDB.GetItem": n, "Kinesis.PutRecord": n, ...}
    DELETE /_standin/calls              resets the counts
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
import sys
from collections import Counter
from decimal import Decimal
from typing import Any

KEY_ATTRIBUTES = ("pk", "sk")
Item = dict[str, dict[str, Any]]


class Tables:
    """Items by table and key, with just enough of DynamoDB's write semantics for plausible answers."""

    def __init__(self) -> None:
        self.items: dict[str, dict[tuple[str, ...], Item]] = {}

    @staticmethod
    def key_of(item: Item) -> tuple[str, ...]:
        return tuple(json.dumps(item.get(name), sort_keys=True) for name in KEY_ATTRIBUTES)

    def get(self, table: str, key: Item) -> Item | None:
        return self.items.get(table, {}).get(self.key_of(key))

    def put(self, table: str, item: Item) -> Item | None:
        rows = self.items.setdefault(table, {})
        key = self.key_of(item)
        old = rows.get(key)
        rows[key] = item
        return old

    def delete(self, table: str, key: Item) -> Item | None:
        return self.items.get(table, {}).pop(self.key_of(key), None)

    def update(self, table: str, request: dict[str, Any]) -> tuple[Item | None, Item]:
        old = self.get(table, request["Key"])
        item: Item = dict(old) if old else dict(request["Key"])
        names = request.get("ExpressionAttributeNames") or {}
        values = request.get("ExpressionAttributeValues") or {}
        expression = request.get("UpdateExpression") or ""
        for clause, body in _clauses(expression):
            for action in _split_top(body):
                try:
                    _apply(clause, action.strip(), item, names, values)
                except (KeyError, ValueError, IndexError, ArithmeticError):
                    continue  # an expression this stand-in does not follow changes nothing
        self.put(table, item)
        return old, item

    def query(self, table: str, request: dict[str, Any]) -> list[Item]:
        names = request.get("ExpressionAttributeNames") or {}
        values = request.get("ExpressionAttributeValues") or {}
        tests = []
        for part in re.split(r"\s+AND\s+", request.get("KeyConditionExpression") or "", flags=re.I):
            if m := re.fullmatch(r"\s*([#\w.]+)\s*(=|<=|>=|<|>)\s*(:\w+)\s*", part):
                tests.append((_name(m[1], names), m[2], values[m[3]]))
            elif m := re.fullmatch(r"\s*begins_with\s*\(\s*([#\w.]+)\s*,\s*(:\w+)\s*\)\s*", part, flags=re.I):
                tests.append((_name(m[1], names), "begins_with", values[m[2]]))
        found = [item for item in self.items.get(table, {}).values() if all(_test(item, *t) for t in tests)]
        found.sort(key=lambda item: _scalar(item.get("sk", {"S": ""})))
        return found[: int(request["Limit"])] if request.get("Limit") else found


def _name(token: str, names: dict[str, str]) -> str:
    return names.get(token, token)


def _scalar(attr: dict[str, Any]) -> Any:
    ((kind, raw),) = attr.items()
    return Decimal(raw) if kind == "N" else raw


def _test(item: Item, name: str, op: str, value: dict[str, Any]) -> bool:
    attr = item.get(name)
    if attr is None or attr.keys() != value.keys():
        return False
    a, b = _scalar(attr), _scalar(value)
    if op == "begins_with":
        return isinstance(a, str) and a.startswith(b)
    return {"=": a == b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.I)


def _clauses(expression: str) -> list[tuple[str, str]]:
    parts = _CLAUSE.split(expression)
    return [(parts[i].upper(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def _split_top(body: str) -> list[str]:
    """Comma-separated actions, ignoring commas inside function calls."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(body[start:i])
            start = i + 1
    out.append(body[start:])
    return [a for a in out if a.strip()]


def _apply(clause: str, action: str, item: Item, names: dict[str, str], values: dict[str, Any]) -> None:
    if clause == "SET":
        path, operand = (s.strip() for s in action.split("=", 1))
        item[_name(path, names)] = _operand(operand, item, names, values)
    elif clause == "REMOVE":
        item.pop(_name(action, names), None)
    else:
        path, token = action.split()
        name, value = _name(path, names), values[token]
        current = item.get(name)
        if "N" in value:
            if clause == "ADD":
                base = Decimal(current["N"]) if current and "N" in current else Decimal(0)
                item[name] = {"N": _number(base + Decimal(value["N"]))}
        else:  # sets: ADD is a union, DELETE a difference
            ((kind, members),) = value.items()
            have = set(current.get(kind, [])) if current else set()
            have = have | set(members) if clause == "ADD" else have - set(members)
            if have:
                item[name] = {kind: sorted(have)}
            else:
                item.pop(name, None)


def _operand(text: str, item: Item, names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    text = text.strip()
    for op in ("+", "-"):
        left, sep, right = _split_operator(text, op)
        if sep:
            a = _operand(left, item, names, values)
            b = _operand(right, item, names, values)
            total = Decimal(a["N"]) + Decimal(b["N"]) if op == "+" else Decimal(a["N"]) - Decimal(b["N"])
            return {"N": _number(total)}
    if m := re.fullmatch(r"if_not_exists\s*\(\s*([#\w.]+)\s*,\s*(.+)\)", text, flags=re.I):
        existing = item.get(_name(m[1], names))
        return existing if existing is not None else _operand(m[2], item, names, values)
    if m := re.fullmatch(r"list_append\s*\(\s*(.+?)\s*,\s*(.+)\)", text, flags=re.I):
        a, b = _operand(m[1], item, names, values), _operand(m[2], item, names, values)
        return {"L": [*a.get("L", []), *b.get("L", [])]}
    if text.startswith(":"):
        return values[text]
    return item[_name(text, names)]


def _split_operator(text: str, op: str) -> tuple[str, str, str]:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == op and depth == 0 and i > 0:
            return text[:i], op, text[i + 1 :]
    return text, "", ""


def _number(value: Decimal) -> str:
    return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else str(value)


class DynamoDB:
    def __init__(self) -> None:
        self.tables = Tables()

    def __call__(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, operation, None)
        if handler is None:
            raise UnknownOperation(operation)
        return handler(request)

    def GetItem(self, r: dict[str, Any]) -> dict[str, Any]:
        item = self.tables.get(r["TableName"], r["Key"])
        return {"Item": item} if item is not None else {}

    def Query(self, r: dict[str, Any]) -> dict[str, Any]:
        items = self.tables.query(r["TableName"], r)
        return {"Items": items, "Count": len(items), "ScannedCount": len(items)}

    def BatchGetItem(self, r: dict[str, Any]) -> dict[str, Any]:
        responses: dict[str, list[Item]] = {}
        for table, spec in r["RequestItems"].items():
            found = [self.tables.get(table, key) for key in spec.get("Keys", [])]
            responses[table] = [item for item in found if item is not None]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def PutItem(self, r: dict[str, Any]) -> dict[str, Any]:
        old = self.tables.put(r["TableName"], r["Item"])
        return {"Attributes": old} if old and r.get("ReturnValues") == "ALL_OLD" else {}

    def DeleteItem(self, r: dict[str, Any]) -> dict[str, Any]:
        old = self.tables.delete(r["TableName"], r["Key"])
        return {"Attributes": old} if old and r.get("ReturnValues") == "ALL_OLD" else {}

    def UpdateItem(self, r: dict[str, Any]) -> dict[str, Any]:
        old, new = self.tables.update(r["TableName"], r)
        wanted = r.get("ReturnValues", "NONE")
        if wanted in ("ALL_NEW", "UPDATED_NEW"):
            return {"Attributes": new}
        if wanted in ("ALL_OLD", "UPDATED_OLD") and old:
            return {"Attributes": old}
        return {}

    def TransactWriteItems(self, r: dict[str, Any]) -> dict[str, Any]:
        for entry in r["TransactItems"]:
            if "Put" in entry:
                self.PutItem(entry["Put"])
            elif "Update" in entry:
                self.UpdateItem(entry["Update"])
            elif "Delete" in entry:
                self.DeleteItem(entry["Delete"])
        return {}

    def TransactGetItems(self, r: dict[str, Any]) -> dict[str, Any]:
        out = []
        for entry in r["TransactItems"]:
            get = entry["Get"]
            item = self.tables.get(get["TableName"], get["Key"])
            out.append({"Item": item} if item is not None else {})
        return {"Responses": out}


class Kinesis:
    def __init__(self) -> None:
        self.sequence = 0
        self.bytes = 0

    def __call__(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if operation == "PutRecord":
            return self._one(request["Data"])
        if operation == "PutRecords":
            records = [self._one(r["Data"]) for r in request["Records"]]
            return {"FailedRecordCount": 0, "Records": records}
        raise UnknownOperation(operation)

    def _one(self, data: str) -> dict[str, Any]:
        self.sequence += 1
        self.bytes += len(base64.b64decode(data))
        return {"ShardId": "shardId-000000000000", "SequenceNumber": f"{self.sequence:056d}"}


class UnknownOperation(Exception):
    pass


SERVICES = {"DynamoDB_20120810": ("DynamoDB", "1.0"), "Kinesis_20131202": ("Kinesis", "1.1")}


class StandIns:
    def __init__(self) -> None:
        self.dynamodb = DynamoDB()
        self.kinesis = Kinesis()
        self.calls: Counter[str] = Counter()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if path == "/_standin/calls":
            if method == "DELETE":
                self.calls.clear()
            payload = {**self.calls, "_kinesis_bytes": self.kinesis.bytes}
            return 200, "application/json", json.dumps(payload).encode()
        prefix, _, operation = headers.get("x-amz-target", "").partition(".")
        service = SERVICES.get(prefix)
        if service is None:
            return 400, "application/json", b'{"__type":"UnknownOperationException"}'
        name, version = service
        self.calls[f"{name}.{operation}"] += 1
        handler = self.dynamodb if name == "DynamoDB" else self.kinesis
        try:
            answer = handler(operation, json.loads(body or b"{}"))
        except UnknownOperation:
            return 400, f"application/x-amz-json-{version}", b'{"__type":"UnknownOperationException"}'
        except (KeyError, TypeError, ValueError) as exc:
            error = {"__type": "com.amazon.coral.validate#ValidationException", "message": repr(exc)}
            return 400, f"application/x-amz-json-{version}", json.dumps(error).encode()
        return 200, f"application/x-amz-json-{version}", json.dumps(answer, separators=(",", ":")).encode()


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with content-length bodies and keep-alive: all botocore sends to these services."""

    def __init__(self, standins: StandIns) -> None:
        self.standins = standins
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            status, content_type, payload = self.standins.handle(method, path, headers, body)
            assert self.transport is not None
            self.transport.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Bad Request'}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                "x-amzn-RequestId: standin\r\n\r\n".encode()
                + payload
            )


async def serve(sock: socket.socket, standins: StandIns | None = None) -> asyncio.Server:
    standins = standins or StandIns()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(standins), sock=sock)


def main() -> None:
    # IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (no delayed-ACK stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)

    async def run() -> None:
        server = await serve(sock)
        print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
