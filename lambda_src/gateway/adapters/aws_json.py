"""A lean client for AWS's JSON protocol (DynamoDB, Kinesis): botocore's method names, answers and
exceptions, at about a third of botocore's CPU per call (docs/decisions/lean-aws-json-client.md).

The adapters pass DynamoDB's attribute values and Kinesis's fields already in wire form, so a call is a
JSON dump, a SigV4 signature (the day's signing key cached), one POST over botocore's own HTTP session
(its pooling, TLS verification, proxies, timeouts and exception mapping), and a JSON load. What
botocore's generic machinery adds per call (parameter validation against the service model, a dozen
events, endpoint rule evaluation, response parsing by shape) is left out; so is loading the service
model at all, which the cold start pays for.

Same behaviour as the botocore clients it replaces: endpoints from `AWS_ENDPOINT_URL_<SERVICE>` or
`AWS_ENDPOINT_URL`, credentials from botocore's chain (refreshed as botocore refreshes them), standard-mode
retries (transient and throttling errors, jittered exponential backoff, `max_attempts` in all), errors
raised as botocore's ClientError (with Error, ResponseMetadata and the error's own fields, e.g.
CancellationReasons) or its connection and timeout exceptions. Bytes (Kinesis `Data`) go as base64.
`meta` is a botocore client's, built on first use only: whatever registers on its events (tests) sees
`before-call` and `after-call` for every call, as with botocore.

`acall` is the same call on the event loop (asyncio streams, kept-alive connections per loop): no thread
hop, which costs more CPU than the call itself once botocore is out of the way (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import socket
import threading
import time
from collections import deque
from typing import Any

# Standard-mode retries (botocore/retries/standard.py): these codes, 5xx and connection errors.
RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 20.0

# service -> (X-Amz-Target prefix, JSON version, SigV4 signing name, endpoint prefix, env name)
SERVICES = {
    "dynamodb": ("DynamoDB_20120810", "1.0", "dynamodb", "dynamodb", "DYNAMODB"),
    "kinesis": ("Kinesis_20131202", "1.1", "kinesis", "kinesis", "KINESIS"),
}


def _bytes_as_base64(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_bytes_as_base64, ensure_ascii=False).encode


def endpoint_for(service: str, region: str, environ: Any = None) -> str:
    """The endpoint botocore would use: the service's or the global AWS_ENDPOINT_URL, else AWS's."""
    env = os.environ if environ is None else environ
    configured = env.get(f"AWS_ENDPOINT_URL_{SERVICES[service][4]}") or env.get("AWS_ENDPOINT_URL")
    if configured and env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        return configured.rstrip("/")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{SERVICES[service][3]}.{region}.{suffix}"


def operation_name(method: str) -> str:
    """put_record -> PutRecord, transact_write_items -> TransactWriteItems."""
    return "".join(part[:1].upper() + part[1:] for part in method.split("_"))


class JsonClient:
    def __init__(
        self,
        service: str,
        region: str,
        *,
        credentials: Any,
        endpoint_url: str | None = None,
        connect_timeout: float = 60,
        read_timeout: float = 60,
        max_attempts: int = 3,
        max_pool_connections: int = 64,
    ) -> None:
        from botocore.httpsession import URLLib3Session

        prefix, version, signing_name, _, _ = SERVICES[service]
        self.service = service
        self.region = region
        self.endpoint_url = endpoint_url or endpoint_for(service, region)
        self._host = self.endpoint_url.split("://", 1)[1].split("/", 1)[0]
        self._url = self.endpoint_url + "/"
        self._target = prefix + "."
        self._content_type = f"application/x-amz-json-{version}"
        self._scope_tail = f"/{region}/{signing_name}/aws4_request"
        self._signing_name = signing_name
        self._credentials = credentials
        self._max_attempts = max(1, max_attempts)
        self._http = URLLib3Session(
            timeout=(connect_timeout, read_timeout),
            max_pool_connections=max_pool_connections,
            # As botocore's clients: headers and body go in separate writes, which Nagle would hold back.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._keys: dict[tuple[str, str], bytes] = {}
        self._timeouts = (connect_timeout, read_timeout)
        self._idle: dict[int, deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._max_idle = max_pool_connections
        self._ssl: Any = None
        self._meta: Any = None
        self._meta_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        operation = operation_name(name)

        def call(**params: Any) -> dict[str, Any]:
            return self.call(operation, params)

        call.__name__ = name
        return call

    @property
    def meta(self) -> Any:
        """A botocore client's meta (service model, events), built on first use: the hot path never needs it."""
        if self._meta is None:
            with self._meta_lock:
                if self._meta is None:
                    from gateway.adapters import aws

                    self._meta = aws.botocore_client(self.service, self.region, endpoint_url=self.endpoint_url).meta
        return self._meta

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        model = self._before(operation, params)
        body = _dumps(params).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                parsed = self._send(operation, body, attempt)
            except Exception as exc:
                if attempt < self._max_attempts and _retryable(exc):
                    time.sleep(_backoff(attempt))
                    continue
                raise
            self._after(operation, model, parsed)
            return parsed

    async def acall(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """`call` on the running event loop."""
        model = self._before(operation, params)
        body = _dumps(params).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, raw = await self._asend(self._signed_headers(operation, body), body)
                parsed = _parsed(operation, status, headers, raw, attempt)
            except Exception as exc:
                if attempt < self._max_attempts and _retryable(exc):
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise
            self._after(operation, model, parsed)
            return parsed

    def _before(self, operation: str, params: dict[str, Any]) -> Any:
        if self._meta is None:
            return None
        model = self._meta.service_model.operation_model(operation)
        event = f"{self._event_prefix('before-call')}.{operation}"
        self._meta.events.emit(event, model=model, params=params, request_signer=None, context={})
        return model

    def _after(self, operation: str, model: Any, parsed: dict[str, Any]) -> None:
        if model is not None:
            event = f"{self._event_prefix('after-call')}.{operation}"
            self._meta.events.emit(event, http_response=None, parsed=parsed, model=model, context={})

    def _event_prefix(self, phase: str) -> str:
        return f"{phase}.{self._meta.service_model.service_id.hyphenize()}"

    def _send(self, operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        from botocore.awsrequest import AWSPreparedRequest

        request = AWSPreparedRequest(
            "POST", self._url, self._signed_headers(operation, body), body, stream_output=False
        )
        response = self._http.send(request)
        return _parsed(operation, response.status_code, response.headers, response.content, attempt)

    async def _asend(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One POST on a kept-alive connection of this loop; botocore's exceptions for transport failures."""
        from botocore import exceptions

        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        message = f"POST / HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body
        idle = self._idle.setdefault(id(asyncio.get_running_loop()), deque())
        connection = None
        while idle and connection is None:
            reader, writer = idle.pop()
            if reader.at_eof() or writer.is_closing():  # the server closed it while it was idle
                writer.close()
            else:
                connection = reader, writer
        connect, read = self._timeouts
        if connection is None:
            try:
                async with asyncio.timeout(connect):
                    connection = await self._connect()
            except TimeoutError:
                raise exceptions.ConnectTimeoutError(endpoint_url=self.endpoint_url) from None
            except OSError as exc:
                raise exceptions.EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from None
        reader, writer = connection
        reusable = False
        try:
            async with asyncio.timeout(read):
                writer.write(message)
                status, response_headers, raw = await _read_response(reader)
            reusable = response_headers.get("connection", "").lower() != "close"
            return status, response_headers, raw
        except TimeoutError:
            raise exceptions.ReadTimeoutError(endpoint_url=self.endpoint_url) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise exceptions.ConnectionClosedError(endpoint_url=self.endpoint_url, error=exc) from None
        finally:
            if reusable and len(idle) < self._max_idle:
                idle.append(connection)
            else:  # failed, cancelled mid-exchange, or told to close: its state is unknown
                writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, _, port = self._host.partition(":")
        secure = self.endpoint_url.startswith("https://")
        if secure and self._ssl is None:
            import ssl

            from botocore.httpsession import get_cert_path

            self._ssl = ssl.create_default_context(cafile=get_cert_path(True))
        reader, writer = await asyncio.open_connection(
            host, int(port or (443 if secure else 80)), ssl=self._ssl if secure else None
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    def _signed_headers(self, operation: str, body: bytes) -> dict[str, str]:
        if self._credentials is None:  # none when the client was made: botocore looks again per call too
            from botocore.exceptions import NoCredentialsError

            from gateway.adapters import aws

            self._credentials = aws.credentials()
            if self._credentials is None:
                raise NoCredentialsError()
        credentials = self._credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = {
            "content-type": self._content_type,
            "host": self._host,
            "x-amz-date": stamp,
            "x-amz-target": self._target + operation,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = ";".join(sorted(headers))
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",
                *(f"{name}:{headers[name]}" for name in sorted(headers)),
                "",
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        day = stamp[:8]
        scope = day + self._scope_tail
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return headers

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self.region, self._signing_name, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 4:  # a new day or rotated credentials: the old keys are done with
                self._keys.clear()
            self._keys[(secret, day)] = key
        return key


def _parsed(operation: str, status: int, headers: Any, raw: bytes, attempt: int) -> dict[str, Any]:
    metadata = {
        "RequestId": headers.get("x-amzn-requestid", ""),
        "HTTPStatusCode": status,
        "HTTPHeaders": dict(headers),
        "RetryAttempts": attempt - 1,
    }
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    if 200 <= status < 300:
        parsed["ResponseMetadata"] = metadata
        return parsed
    raise _client_error(operation, status, parsed, metadata)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            chunk = await reader.readexactly(size + 2)
            if not size:
                return status, headers, b"".join(chunks)
            chunks.append(chunk[:-2])
    headers["connection"] = "close"  # a body that ends with the connection
    return status, headers, await reader.read()


def _backoff(attempt: int) -> float:
    return random.random() * min(MAX_BACKOFF_SECONDS, 2 ** (attempt - 1))


def _client_error(operation: str, status: int, body: dict[str, Any], metadata: dict[str, Any]) -> Exception:
    from botocore.exceptions import ClientError

    code = str(body.get("__type") or metadata["HTTPHeaders"].get("x-amzn-errortype") or f"HTTP{status}")
    code = code.rsplit("#", 1)[-1].split(":", 1)[0]
    message = str(body.get("message") or body.get("Message") or "")
    fields = {k: v for k, v in body.items() if k not in ("__type", "message")}
    return ClientError(
        {**fields, "Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}, operation
    )


def _retryable(exc: Exception) -> bool:
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error.get("Code") in RETRYABLE_CODES or status in RETRYABLE_STATUS
    return False
