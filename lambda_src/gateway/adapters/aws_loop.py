"""botocore calls awaited on the event loop: botocore builds, signs, retries and parses; h11 speaks HTTP.

A botocore client blocks, so every call used to cross to a worker thread and back. `call(client,
"put_record", **params)` runs botocore's own call in two halves instead, as aiobotocore does with aiohttp
(docs/decisions/aws-calls-on-the-event-loop.md):

1. botocore's method, synchronously on the loop: parameter events, validation (when configured),
   endpoint rules, serialization, `before-call` (its handlers, and a stub's answer when a test registered one). A last
   `before-call` handler, active only inside `call`, stops the call there and hands over the request.
2. botocore's send loop (Endpoint._send_request and _do_get_response), awaited: `create_request` signs
   each attempt; `before-send` may answer or raise instead of the network, as in botocore; the answer is
   parsed by botocore's parser; `needs-retry` asks botocore's retry handler (standard mode's
   classification, backoff and retry quota) and its delay is awaited; then `after-call`, and botocore's
   modeled exception for an error answer (a ClientError with botocore's response shape).

The request goes out over asyncio streams with h11 (the HTTP/1.1 protocol library httpx is built on),
on connections kept per event loop and host: botocore's HTTP goes through urllib3 on a thread, and httpx's
AsyncClient costs more CPU per request than that thread hop (docs/benchmarks.md). Its failures become the
exceptions botocore's URLLib3Session raises (ConnectTimeoutError, ReadTimeoutError,
EndpointConnectionError, ConnectionClosedError, HTTPClientError), so botocore's retries and the
adapters' "unknown outcome" checks see what they saw before. The client's connect and read timeouts,
CA bundle (or verify=False) and TCP keep-alive apply.

Credentials that need refreshing (not the Lambda's, which come from its environment) are refreshed on a
thread before the call, as signing would refresh them in place and block the loop. What is not a plain
request goes through botocore's own HTTP session on a thread: a configured proxy or client certificate, a
streamed or `Expect` request body. A client that is not a botocore client (tests'
fakes), or a botocore without what this relies on, is called on a thread as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import socket
import ssl
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# The request signer of the client whose call `call` is building: only that call is handed over.
_deferring: contextvars.ContextVar[Any] = contextvars.ContextVar("gateway_aws_loop_deferring", default=None)
_HANDLER_ID = "gateway-aws-loop-defer"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
# Idle connections kept per host and loop; more may be open at once, as urllib3's non-blocking pool does.
_IDLE_PER_HOST = 16
_READ_SIZE = 65536


async def call(client: Any, method: str, /, **params: Any) -> Any:
    """`client.<method>(**params)`, awaited without a thread; its answer and exceptions are botocore's."""
    state = _state(client)
    if state is None:
        return await asyncio.to_thread(getattr(client, method), **params)
    credentials = state.credentials
    if credentials is not None and credentials.refresh_needed():
        # Refreshing (a container credentials endpoint, STS) blocks: on a thread, before signing needs it.
        await asyncio.to_thread(credentials.get_frozen_credentials)
    token = _deferring.set(state.signer)
    try:
        return getattr(client, method)(**params)  # answered without sending (a stub): botocore's answer
    except _Deferred as deferred:
        built = deferred
    finally:
        _deferring.reset(token)
    return await _finish(state, built)


async def aclose() -> None:
    """Close this loop's connections (the app's shutdown, tests)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        pool.close()


# -- botocore's half ------------------------------------------------------------------------------


class _Deferred(Exception):
    """Raised by the last `before-call` handler: the request as botocore built it, not yet sent."""

    def __init__(self, model: Any, request_dict: dict[str, Any], context: dict[str, Any], ctx: Any) -> None:
        super().__init__("deferred to the event loop")
        self.model = model
        self.request_dict = request_dict
        self.context = context
        self.ctx = ctx  # botocore's client context (user agent feature ids), for the steps that follow


def _defer(model: Any, params: dict[str, Any], context: dict[str, Any], request_signer: Any = None, **_: Any) -> None:
    if request_signer is not None and _deferring.get() is request_signer:
        raise _Deferred(model, params, context, _get_context())


def _get_context() -> Any:
    try:
        from botocore.context import get_context
    except ImportError:  # an older botocore: no client context
        return None
    return get_context()


class _Client:
    """What `call` keeps per botocore client."""

    def __init__(self, client: Any) -> None:
        endpoint = client._endpoint
        for name in ("create_request", "_update_retries_context", "_add_modeled_error_fields"):
            getattr(endpoint, name)  # present in every botocore this supports; missing: threads
        session = endpoint.http_session
        config = client.meta.config
        self.endpoint = endpoint
        self.signer = client._request_signer
        self.http_session = session
        self.events = client.meta.events
        self.exceptions = client.exceptions
        self.config = config
        self.service_id = client.meta.service_model.service_id.hyphenize()
        self.parser_factory = endpoint._response_parser_factory
        credentials = getattr(self.signer, "_credentials", None)
        self.credentials = credentials if callable(getattr(credentials, "refresh_needed", None)) else None
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.keepalive = bool(getattr(config, "tcp_keepalive", False))
        verify = getattr(session, "_verify", True)
        self.tls_key = verify if isinstance(verify, str) else bool(verify)
        # Requests this transport does not send itself go through botocore's session (on a thread).
        self.own_transport = not (
            getattr(config, "proxies", None)
            or getattr(config, "client_cert", None)
            or any(os.environ.get(name) for name in _PROXY_VARIABLES)
        )
        client.meta.events.register_last("before-call", _defer, unique_id=_HANDLER_ID)


_clients: weakref.WeakKeyDictionary[Any, _Client | None] = weakref.WeakKeyDictionary()


def _state(client: Any) -> _Client | None:
    try:
        return _clients[client]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: not a botocore client
        return None
    from botocore.client import BaseClient

    state = None
    if isinstance(client, BaseClient):
        try:
            state = _Client(client)
        except Exception as exc:  # a botocore without what this needs: threads, as before
            log.warning("%s calls stay on threads: %r", type(client).__name__, exc)
    _clients[client] = state
    return state


class _botocore_context:
    """The call's botocore client context around the synchronous steps (signing reads it)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.token: Any = None

    def __enter__(self) -> None:
        if self.ctx is not None:
            from botocore.context import set_context

            self.token = set_context(self.ctx)

    def __exit__(self, *_: Any) -> None:
        if self.token is not None:
            from botocore.context import reset_context

            reset_context(self.token)
            self.token = None


async def _finish(state: _Client, built: _Deferred) -> Any:
    """The rest of BaseClient._make_api_call, from its request being built."""
    model, request_dict, request_context = built.model, built.request_dict, built.context
    with _botocore_context(built.ctx):
        _compress_and_checksum(state, request_dict, model)
    try:
        http, parsed = await _send_request(state, request_dict, model, built.ctx)
    except Exception as exc:
        state.events.emit(f"after-call-error.{state.service_id}.{model.name}", exception=exc, context=request_context)
        raise
    state.events.emit(
        f"after-call.{state.service_id}.{model.name}",
        http_response=http,
        parsed=parsed,
        model=model,
        context=request_context,
    )
    if http.status_code >= 300:
        code = request_context.get("error_code_override") or parsed.get("Error", {}).get("Code")
        raise state.exceptions.from_code(code)(parsed, model.name)
    return parsed


def _compress_and_checksum(state: _Client, request_dict: dict[str, Any], model: Any) -> None:
    try:
        from botocore.compress import maybe_compress_request
    except ImportError:  # an older botocore: no request compression
        pass
    else:
        maybe_compress_request(state.config, request_dict, model)
    from botocore.httpchecksum import apply_request_checksum

    apply_request_checksum(request_dict)


async def _send_request(state: _Client, request_dict: dict[str, Any], model: Any, ctx: Any) -> tuple[Any, Any]:
    """Endpoint._send_request: attempts until botocore's retry handler says stop, its delays awaited."""
    endpoint = state.endpoint
    context = request_dict["context"]
    attempts = 1
    with _botocore_context(ctx):
        endpoint._update_retries_context(context, attempts)
        request = endpoint.create_request(request_dict, model)
    while True:
        success, exception = await _get_response(state, request, model, context)
        delay = _first(
            state.events.emit(
                f"needs-retry.{state.service_id}.{model.name}",
                response=success,
                endpoint=endpoint,
                operation=model,
                attempts=attempts,
                caught_exception=exception,
                request_dict=request_dict,
            )
        )
        if delay is None or delay is False:
            break
        await asyncio.sleep(delay)
        attempts += 1
        with _botocore_context(ctx):
            endpoint._update_retries_context(context, attempts, success)
            request.reset_stream()
            request = endpoint.create_request(request_dict, model)  # signed again
    if success is not None and "ResponseMetadata" in success[1]:
        success[1]["ResponseMetadata"]["RetryAttempts"] = attempts - 1
    if exception is not None:
        raise exception
    return success


def _first(responses: list[tuple[Any, Any]]) -> Any:
    for _, response in responses:
        if response is not None:
            return response
    return None


async def _get_response(state: _Client, request: Any, model: Any, context: dict[str, Any]) -> tuple[Any, Any]:
    """Endpoint._get_response: (success, exception), success being (http_response, parsed)."""
    from botocore.endpoint import convert_to_response_dict
    from botocore.httpchecksum import handle_checksum_body

    success: Any = None
    exception: Exception | None = None
    try:
        http = _first(state.events.emit(f"before-send.{state.service_id}.{model.name}", request=request))
        if http is None:
            http = await _send(state, request, streamed=model.has_event_stream_output)
    except Exception as exc:  # as botocore: the retry handler decides what a failure to send means
        exception = exc
    else:
        response_dict = convert_to_response_dict(http, model)
        handle_checksum_body(http, response_dict, context, model)
        customized: dict[str, Any] = {}
        state.events.emit(
            f"before-parse.{state.service_id}.{model.name}",
            operation_model=model,
            response_dict=response_dict,
            customized_response_dict=customized,
        )
        parser = state.parser_factory.create_parser(model.service_model.resolved_protocol)
        parsed = parser.parse(response_dict, model.output_shape)
        parsed.update(customized)
        if http.status_code >= 300:
            state.endpoint._add_modeled_error_fields(response_dict, parsed, model, parser)
        success = (http, parsed)
    state.events.emit(
        f"response-received.{state.service_id}.{model.name}",
        response_dict=convert_to_response_dict(success[0], model) if success is not None else None,
        parsed_response=success[1] if success is not None else None,
        context=context,
        exception=exception,
    )
    return success, exception


# -- the HTTP half --------------------------------------------------------------------------------


async def _send(state: _Client, request: Any, *, streamed: bool = False) -> Any:
    """The signed request, sent; an AWSResponse, or botocore's exception for what went wrong. A `streamed`
    (event-stream) answer that succeeded comes with its body unread: `raw` is a _Stream."""
    body = request.body
    if (
        not state.own_transport
        or not isinstance(body, (bytes, bytearray, str, type(None)))
        or "Expect" in request.headers
    ):
        return await asyncio.to_thread(state.http_session.send, request)
    from botocore import exceptions as e

    url = request.url
    try:
        return await _pool().exchange(state, request, url, body, streamed=streamed)
    except _ConnectFailed as failed:
        cause = failed.__cause__
        if isinstance(cause, TimeoutError):
            raise e.ConnectTimeoutError(endpoint_url=url, error=cause) from None
        if isinstance(cause, ssl.SSLError):
            raise e.SSLError(endpoint_url=url, error=cause) from None
        raise e.EndpointConnectionError(endpoint_url=url, error=cause) from None
    except TimeoutError as exc:
        raise e.ReadTimeoutError(endpoint_url=url, error=exc) from None
    except (OSError, EOFError, _h11().ProtocolError) as exc:
        raise e.ConnectionClosedError(endpoint_url=url, request=request, error=exc) from None


def _h11() -> Any:
    import h11

    return h11


class _ConnectFailed(Exception):
    """Opening the connection failed (its cause says why): nothing was sent."""


class _Connection:
    __slots__ = ("key", "reader", "writer", "h11", "body_ended")

    def __init__(self, key: tuple[Any, ...], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.h11 = _h11().Connection(_h11().CLIENT)
        self.body_ended = False

    async def next_event(self, timeout: float) -> Any:
        """h11's next event, reading from the socket as it needs (each read within `timeout`, as urllib3's)."""
        h11 = _h11()
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(_READ_SIZE)
            self.h11.receive_data(data)
        return event

    async def next_data(self, timeout: float) -> bytes | None:
        """The body's next bytes: once some came, all that h11 holds (what arrived together, together, however
        many chunks the sender made of it); None at the body's end."""
        h11 = _h11()
        if self.body_ended:
            return None
        pieces: list[bytes] = []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if pieces:
                    return b"".join(pieces)
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(_READ_SIZE)
                self.h11.receive_data(data)
            elif isinstance(event, h11.Data):
                pieces.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.body_ended = True
                return b"".join(pieces) if pieces else None
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("the connection closed before the answer ended")

    def reusable(self) -> bool:
        h11 = _h11()
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """This loop's kept-alive connections, by scheme, host, port and TLS settings."""

    def __init__(self) -> None:
        self.idle: dict[tuple[Any, ...], list[_Connection]] = {}

    async def exchange(self, state: _Client, request: Any, url: str, body: Any, *, streamed: bool = False) -> Any:
        from botocore.awsrequest import AWSResponse

        tls, host, port, authority, target = _route(url)
        key = (tls, host, port, state.tls_key if tls else None, state.keepalive)
        content = body.encode() if isinstance(body, str) else bytes(body or b"")
        headers = [("Host", authority), *request.headers.items()]
        if content and "Content-Length" not in request.headers and "Transfer-Encoding" not in request.headers:
            headers.append(("Content-Length", str(len(content))))
        connection = await self._connection(state, key)
        kept = released = False
        try:
            status, response_headers = await self._send_and_read_head(
                connection, request.method, target, headers, content, state.read_timeout
            )
            if streamed and 200 <= status < 300:  # the body is read as it arrives, by whoever holds the answer
                kept = True
                return AWSResponse(url, status, response_headers, _Stream(self, connection, url, state.read_timeout))
            data = await self._read_body(connection, state.read_timeout)
            released = connection.reusable()
        finally:
            if released:
                self._release(connection)
            elif not kept:
                connection.close()
        return AWSResponse(url, status, response_headers, _Body(data))

    async def _connection(self, state: _Client, key: tuple[Any, ...]) -> _Connection:
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.reader.at_eof() and not connection.writer.is_closing():
                return connection
            connection.close()  # the server closed it while it was idle
        tls, host, port = key[0], key[1], key[2]
        try:
            async with asyncio.timeout(state.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=_tls_context(state.tls_key) if tls else None,
                    server_hostname=host if tls else None,
                    limit=_READ_SIZE,
                )
        except (OSError, TimeoutError) as exc:
            raise _ConnectFailed() from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if state.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return _Connection(key, reader, writer)

    @staticmethod
    async def _send_and_read_head(
        connection: _Connection,
        method: str,
        target: str,
        headers: list[tuple[str, Any]],
        content: bytes,
        timeout: float,
    ) -> tuple[int, dict[str, str]]:
        h11 = _h11()
        conn = connection.h11
        connection.body_ended = False
        out = conn.send(h11.Request(method=method, target=target, headers=headers))
        if content:
            out += conn.send(h11.Data(data=content))
        out += conn.send(h11.EndOfMessage())
        connection.writer.write(out)
        if connection.writer.transport.get_write_buffer_size():  # not all of it went out at once
            async with asyncio.timeout(timeout):
                await connection.writer.drain()
        while True:
            event = await connection.next_event(timeout)
            if isinstance(event, h11.Response):
                headers_out: dict[str, str] = {}
                for name, value in event.headers:
                    key, text = name.decode("latin-1"), value.decode("latin-1")
                    headers_out[key] = f"{headers_out[key]}, {text}" if key in headers_out else text
                return event.status_code, headers_out
            if isinstance(event, h11.ConnectionClosed):
                raise EOFError("the connection closed before an answer came")
            # an informational (1xx) answer: the real one follows

    @staticmethod
    async def _read_body(connection: _Connection, timeout: float) -> bytes:
        chunks: list[bytes] = []
        while (chunk := await connection.next_data(timeout)) is not None:
            chunks.append(chunk)
        return b"".join(chunks)

    def _release(self, connection: _Connection) -> None:
        connection.h11.start_next_cycle()
        idle = self.idle.setdefault(connection.key, [])
        if len(idle) < _IDLE_PER_HOST:
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=8)
def _tls_context(verify: str | bool) -> ssl.SSLContext:
    """botocore's TLS settings (its urllib3 context) with its CA bundle, or a path given as `verify`."""
    from botocore.httpsession import create_urllib3_context, get_cert_path

    context = create_urllib3_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        context.load_verify_locations(get_cert_path(verify))
    return context


def warm() -> None:
    """Pay at startup (in a thread) what the first call would: h11's import and loading the CA bundle."""
    _h11()
    _tls_context(True)


@functools.lru_cache(maxsize=256)
def _route(url: str) -> tuple[bool, str, int, str, str]:
    """(TLS, host, port, the Host header, the request target) of a URL. Host as http.client sends it (and
    as SigV4 signed it): with the port only when it is not the scheme's default."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    authority = parts.netloc.rsplit("@", 1)[-1]
    if parts.port == default:
        authority = authority.rsplit(":", 1)[0]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return tls, parts.hostname or "", parts.port or default, authority, target


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool()
    return pool


class _Body:
    """An answer's bytes as urllib3's response offers them to botocore (stream, read, close)."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def stream(self, amt: int = _READ_SIZE, decode_content: Any = None) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk

    def read(self, amt: int | None = None, decode_content: Any = None) -> bytes:
        end = len(self._data) if amt is None else min(len(self._data), self._offset + amt)
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def close(self) -> None:
        pass


class _Stream:
    """An event-stream answer's body as it arrives: `async for data in stream` yields what arrived together.

    botocore's EventStream keeps it as `_raw_stream`. The connection goes back to the pool at the body's
    end, and is closed when the body is left unread (`close`, `aclose`, a failure or a cancellation)."""

    def __init__(self, pool: _Pool, connection: _Connection, url: str, timeout: float) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._url = url
        self._timeout = timeout

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> bytes:
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        from botocore import exceptions as e

        try:
            data = await connection.next_data(self._timeout)
        except TimeoutError as exc:
            self.close()
            raise e.ReadTimeoutError(endpoint_url=self._url, error=exc) from None
        except (OSError, EOFError, _h11().ProtocolError) as exc:
            self.close()
            raise e.ResponseStreamingError(error=exc) from None
        except BaseException:  # cancelled mid-read: the connection's state is unknown
            self.close()
            raise
        if data is None:
            self._connection = None
            if connection.reusable():
                self._pool._release(connection)
            else:
                connection.close()
            raise StopAsyncIteration
        return data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def aclose(self) -> None:
        self.close()
