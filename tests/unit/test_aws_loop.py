"""botocore calls awaited on the event loop (gateway/adapters/aws_loop.py) against a scripted HTTP server on
127.0.0.1, side by side with botocore's own path (the same client called on a thread): what is sent is what
was signed, answers and errors come back as botocore gives them, standard mode retries what it retries and
no more, and the transport's failures are botocore's exceptions; connections are kept; stubs and fakes
still work; an event-stream body arrives as it is sent."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import h11
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.stub import Stubber
from gateway.adapters import aws_loop
from gateway.adapters.aws_loop import call

from gatewayctl.local.eventstream import chunk_event, exception_event

pytestmark = pytest.mark.anyio
CREDENTIALS = Credentials("AKIDEXAMPLE", "secret", "token")
KEY = {"pk": {"S": "T#a"}, "sk": {"S": "W#1"}}
ITEMS = [
    {
        "Update": {
            "TableName": "usage",
            "Key": KEY,
            "UpdateExpression": "ADD #requests :r",
            "ConditionExpression": "attribute_not_exists(#requests) OR #requests <= :max",
            "ExpressionAttributeNames": {"#requests": "requests"},
            "ExpressionAttributeValues": {":r": {"N": "1"}, ":max": {"N": "9"}},
        }
    }
]


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int


@dataclass
class Server:
    """Answers each request with the next step of `script`: (status, headers, body), a list of body chunks
    (sent one by one, as a stream), "close" (the connection drops unanswered), or "hang" (no answer)."""

    script: list[Any] = field(default_factory=list)
    default: Any = None
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = None, b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is not h11.DONE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                self.received.append(Received(request.method.decode(), request.target.decode(), headers, body, number))
                step = self.script.pop(0) if self.script else self.default
                if step == "close":
                    return
                if step == "hang":
                    await asyncio.sleep(3600)
                if isinstance(step, list):  # a stream: chunked, each piece written on its own
                    writer.write(
                        conn.send(
                            h11.Response(
                                status_code=200,
                                headers=[
                                    ("content-type", "application/vnd.amazon.eventstream"),
                                    ("transfer-encoding", "chunked"),
                                ],
                            )
                        )
                    )
                    for piece in step:
                        if piece == "close":
                            return
                        together = piece if isinstance(piece, tuple) else (piece,)  # chunks in one write
                        writer.write(b"".join(conn.send(h11.Data(data=chunk)) for chunk in together))
                        await writer.drain()
                        await asyncio.sleep(0.01)
                    writer.write(conn.send(h11.EndOfMessage()))
                else:
                    status, extra, payload = step
                    response_headers = [("content-length", str(len(payload))), ("x-amzn-requestid", "rid"), *extra]
                    writer.write(conn.send(h11.Response(status_code=status, headers=response_headers)))
                    writer.write(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError):
            return
        finally:
            writer.close()


def json_answer(status: int, body: dict[str, Any], content_type: str = "application/x-amz-json-1.0") -> tuple:
    return (status, [("content-type", content_type)], json.dumps(body).encode())


OK = json_answer(200, {})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(default=OK)
    listener = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        listener.close()
        await aws_loop.aclose()


def client(service: str, url: str, *, verify: Any = None, **config: Any) -> Any:
    options = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 2, "read_timeout": 3, **config}
    session = botocore.session.get_session()
    made = session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url=url,
        verify=verify,
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
        config=Config(**options),
    )
    no_backoff(made)
    return made


def no_backoff(made: Any) -> None:
    """Standard mode's jittered delays made zero (the decision to retry stays botocore's)."""
    service = made.meta.service_model.service_id.hyphenize()
    for handler in made.meta.events._emitter._handlers.prefix_search(f"needs-retry.{service}.X"):
        policy = getattr(getattr(handler, "__self__", None), "_retry_policy", None)
        if policy is not None:
            policy._retry_backoff._random = lambda: 0.0


def signature_holds(received: Received, credentials: Credentials = CREDENTIALS) -> bool:
    """What arrived, signed again with the same key and time, gives the Authorization that came with it."""
    signed = [
        p.split("=", 1)[1] for p in received.headers["authorization"].split(", ") if p.startswith("SignedHeaders")
    ]
    names = signed[0].split(";")
    request = AWSRequest(
        method=received.method,
        url=f"http://{received.headers['host']}{received.target}",
        data=received.body,
        headers={name: received.headers[name] for name in names},
    )
    from botocore.auth import SigV4Auth

    class At(SigV4Auth):
        # add_auth stamps the current time just before this: sign at the sent time instead (a check a
        # second later would fail otherwise), and keep the sent token.
        def _modify_request_before_signing(self, request: Any) -> None:
            request.context["timestamp"] = request.headers["x-amz-date"]

    auth = At(credentials, received.headers["authorization"].split("/")[3], "us-east-1")
    auth.add_auth(request)
    return request.headers["Authorization"] == received.headers["authorization"]


async def both(made: Any, method: str, **params: Any) -> tuple[Any, Any]:
    """The call awaited on the loop, then the same call on a thread (botocore's own path)."""
    on_loop = await call(made, method, **params)
    on_thread = await asyncio.to_thread(getattr(made, method), **params)
    return on_loop, on_thread


def without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


async def test_what_is_sent_is_what_botocore_sends_and_signed(server: Server) -> None:
    made = client("dynamodb", server.url)
    await both(made, "transact_write_items", TransactItems=ITEMS, ClientRequestToken="t-1")
    loop_sent, thread_sent = server.received
    assert loop_sent.body == thread_sent.body and loop_sent.target == thread_sent.target == "/"
    assert json.loads(loop_sent.body)["ClientRequestToken"] == "t-1"
    varying = {"x-amz-date", "authorization", "amz-sdk-invocation-id", "accept-encoding"}
    assert {k: v for k, v in loop_sent.headers.items() if k not in varying} == {
        k: v for k, v in thread_sent.headers.items() if k not in varying
    }
    assert signature_holds(loop_sent) and signature_holds(thread_sent)


async def test_answers_are_botocores(server: Server) -> None:
    made = client("dynamodb", server.url)
    item = {"Item": {**KEY, "requests": {"N": "3"}}}
    server.script = [json_answer(200, item), json_answer(200, item)]
    on_loop, on_thread = await both(made, "get_item", TableName="usage", Key=KEY)
    assert without_metadata(on_loop) == without_metadata(on_thread) == item
    assert on_loop["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert on_loop["ResponseMetadata"]["RequestId"] == "rid"
    assert on_loop["ResponseMetadata"]["RetryAttempts"] == 0


async def test_an_error_is_botocores_modeled_exception_with_its_fields(server: Server) -> None:
    made = client("dynamodb", server.url)
    cancelled = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled",
        "CancellationReasons": [{"Code": "ConditionalCheckFailed", "Item": {"requests": {"N": "9"}}}],
    }
    server.script = [json_answer(400, cancelled), json_answer(400, cancelled)]
    errors = []
    for attempt in (
        lambda: call(made, "transact_write_items", TransactItems=ITEMS, ClientRequestToken="t"),
        lambda: asyncio.to_thread(made.transact_write_items, TransactItems=ITEMS, ClientRequestToken="t"),
    ):
        with pytest.raises(made.exceptions.TransactionCanceledException) as caught:
            await attempt()
        errors.append(caught.value)
    on_loop, on_thread = errors
    assert isinstance(on_loop, ClientError)
    assert on_loop.response["CancellationReasons"] == on_thread.response["CancellationReasons"]
    assert on_loop.response["Error"] == on_thread.response["Error"]
    assert len(server.received) == 2  # a definite failure: not retried


@pytest.mark.parametrize(
    ("answers", "sends", "succeeds"),
    [
        ([json_answer(500, {"__type": "InternalServerError"})] * 2 + [OK], 3, True),
        ([json_answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"})] * 3, 3, False),
        ([json_answer(400, {"__type": "com.amazon.coral.validate#ValidationException"})], 1, False),
    ],
    ids=["5xx-retried", "throttling-retried-then-raised", "validation-not-retried"],
)
async def test_standard_mode_retries_what_it_retries(server: Server, answers, sends, succeeds) -> None:
    made = client("dynamodb", server.url)
    server.script = list(answers)
    if succeeds:
        answer = await call(made, "get_item", TableName="usage", Key=KEY)
        assert answer["ResponseMetadata"]["RetryAttempts"] == sends - 1
    else:
        with pytest.raises(ClientError):
            await call(made, "get_item", TableName="usage", Key=KEY)
    assert len(server.received) == sends
    assert [r.headers["amz-sdk-request"].split(";")[0] for r in server.received] == [
        f"attempt={n}" for n in range(1, sends + 1)
    ]
    assert len({signature_holds(r) for r in server.received}) == 1 and signature_holds(server.received[-1])


async def test_a_dropped_connection_is_botocores_connection_closed_error_and_retried(server: Server) -> None:
    made = client("dynamodb", server.url)
    server.script = ["close", "close", "close"]
    with pytest.raises(ConnectionClosedError):
        await call(made, "transact_write_items", TransactItems=ITEMS, ClientRequestToken="t-2")
    assert len(server.received) == 3
    assert {json.loads(r.body)["ClientRequestToken"] for r in server.received} == {"t-2"}  # same token each time


async def test_no_answer_in_time_is_a_read_timeout(server: Server) -> None:
    made = client("dynamodb", server.url, read_timeout=0.2, retries={"total_max_attempts": 1, "mode": "standard"})
    server.script = ["hang"]
    with pytest.raises(ReadTimeoutError):
        await call(made, "get_item", TableName="usage", Key=KEY)


async def test_nothing_listening_is_an_endpoint_connection_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    made = client("dynamodb", f"http://127.0.0.1:{port}", retries={"total_max_attempts": 1, "mode": "standard"})
    with pytest.raises(EndpointConnectionError):
        await call(made, "get_item", TableName="usage", Key=KEY)


async def test_connections_are_kept_and_calls_at_once_get_their_own(server: Server) -> None:
    made = client("kinesis", server.url)
    answer = json_answer(200, {"ShardId": "s", "SequenceNumber": "1"}, "application/x-amz-json-1.1")
    server.default = answer
    for _ in range(3):
        await call(made, "put_record", StreamName="audit", Data=b"x\n", PartitionKey="t")
    assert server.connections == 1
    await asyncio.gather(
        *(call(made, "put_record", StreamName="audit", Data=b"x\n", PartitionKey="t") for _ in range(3))
    )
    assert server.connections == 3
    assert json.loads(server.received[0].body)["Data"] == "eAo="  # botocore's base64 of the blob


async def test_hooks_see_the_call_and_a_before_send_answer_replaces_the_network(server: Server) -> None:
    made = client("dynamodb", server.url)
    seen: list[str] = []
    made.meta.events.register("before-call.dynamodb", lambda model, **_: seen.append(f"before {model.name}"))
    made.meta.events.register("after-call.dynamodb", lambda model, **_: seen.append(f"after {model.name}"))

    class Raw:
        def stream(self, **_: Any):
            yield b'{"Item": {"pk": {"S": "stub"}}}'

    made.meta.events.register(
        "before-send.dynamodb.GetItem",
        lambda request, **_: AWSResponse(request.url, 200, {}, Raw()),
    )
    answer = await call(made, "get_item", TableName="usage", Key=KEY)
    assert answer["Item"] == {"pk": {"S": "stub"}}
    assert seen == ["before GetItem", "after GetItem"] and not server.received


async def test_a_stubbed_client_answers_from_its_stub(server: Server) -> None:
    made = client("dynamodb", server.url)
    with Stubber(made) as stub:
        stub.add_response("get_item", {"Item": {"pk": {"S": "stubbed"}}})
        answer = await call(made, "get_item", TableName="usage", Key=KEY)
    assert answer["Item"] == {"pk": {"S": "stubbed"}} and not server.received


async def test_a_fake_client_is_called_on_a_thread() -> None:
    class Fake:
        def get_item(self, **kwargs: Any) -> dict[str, Any]:
            return {"thread": threading.current_thread() is not threading.main_thread(), **kwargs}

    assert await call(Fake(), "get_item", TableName="t") == {"thread": True, "TableName": "t"}


async def test_the_call_is_not_deferred_outside_call(server: Server) -> None:
    made = client("dynamodb", server.url)
    await call(made, "get_item", TableName="usage", Key=KEY)  # registers the deferring hook
    server.script = [json_answer(200, {"Item": KEY})]
    assert (await asyncio.to_thread(made.get_item, TableName="usage", Key=KEY))["Item"] == KEY


def bedrock(url: str, **config: Any) -> Any:
    return client("bedrock-runtime", url, retries={"total_max_attempts": 1, "mode": "standard"}, **config)


def events(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{i}"}} for i in range(n)
    ]


async def test_an_event_stream_arrives_as_it_is_sent_and_its_connection_is_kept(server: Server) -> None:
    made = bedrock(server.url)
    pieces = [chunk_event(e) for e in events(3)]
    server.script = [pieces]
    answer = await call(made, "invoke_model_with_response_stream", modelId="m", body=b"{}")
    reads = [data async for data in answer["body"]._raw_stream]
    assert reads == pieces  # each piece as it came, not all at the end
    await call(made, "invoke_model", modelId="m", body=b"{}")  # the same connection, back in the pool
    assert server.connections == 1


async def test_chunks_that_arrive_together_are_read_together(server: Server) -> None:
    made = bedrock(server.url)
    pieces = [chunk_event(e) for e in events(4)]
    server.script = [[pieces[0], tuple(pieces[1:])]]  # the sender's chunks 2-4 in one write
    answer = await call(made, "invoke_model_with_response_stream", modelId="m", body=b"{}")
    reads = [data async for data in answer["body"]._raw_stream]
    assert reads == [pieces[0], b"".join(pieces[1:])]


async def test_an_event_stream_left_unread_closes_its_connection(server: Server) -> None:
    made = bedrock(server.url)
    server.script = [[chunk_event(e) for e in events(3)]]
    answer = await call(made, "invoke_model_with_response_stream", modelId="m", body=b"{}")
    stream = answer["body"]._raw_stream
    assert await stream.__anext__()
    answer["body"].close()  # botocore's EventStream.close
    await call(made, "invoke_model", modelId="m", body=b"{}")
    assert server.connections == 2


async def test_an_event_stream_cut_short_is_a_response_streaming_error(server: Server) -> None:
    made = bedrock(server.url)
    server.script = [[chunk_event(events(1)[0]), "close"]]
    answer = await call(made, "invoke_model_with_response_stream", modelId="m", body=b"{}")
    with pytest.raises(ResponseStreamingError):
        async for _ in answer["body"]._raw_stream:
            pass


async def test_bedrock_streams_through_the_loop(server: Server) -> None:
    from gateway.adapters.bedrock import BedrockUpstream
    from gateway.domain.failover import UpstreamFailure

    from tests.unit.runtime_fakes import settings

    upstream = BedrockUpstream(settings(), "us-east-1", client=bedrock(server.url))
    together = b"".join(chunk_event(e) for e in events(3))
    server.script = [[chunk_event(events(1)[0]), together + exception_event("modelStreamErrorException", "boom")]]
    stream = upstream.stream("m", {"max_tokens": 1}, beta=(), timeout=5)
    first = await stream.__anext__()
    assert first[0] == "content_block_delta"
    second = await stream.__anext__()
    assert stream.ready() == 2  # the rest of what arrived together is in hand
    rest = [await stream.__anext__() for _ in range(stream.ready())]
    assert [json.loads(data)["delta"]["text"] for _, data in (second, *rest)] == ["w0", "w1", "w2"]
    with pytest.raises(UpstreamFailure) as failed:
        await stream.__anext__()
    assert failed.value.possibly_billed and failed.value.code == "ModelStreamErrorException"
    assert json.loads(server.received[0].body) == {"max_tokens": 1, "anthropic_version": "bedrock-2023-05-31"}


async def test_bedrock_invoke_and_its_refusal_through_the_loop(server: Server) -> None:
    from gateway.adapters.bedrock import BedrockUpstream
    from gateway.domain.failover import UpstreamFailure

    from tests.unit.runtime_fakes import settings

    upstream = BedrockUpstream(settings(), "us-east-1", client=bedrock(server.url))
    reply = {"id": "msg", "type": "message", "content": []}
    server.script = [
        (200, [("content-type", "application/json")], json.dumps(reply).encode()),
        (
            429,
            [("content-type", "application/json"), ("x-amzn-errortype", "ThrottlingException:http://x")],
            b'{"message":"slow down"}',
        ),
    ]
    assert json.loads(await upstream.invoke("m", {"max_tokens": 1}, beta=(), timeout=5)) == reply
    with pytest.raises(UpstreamFailure) as refused:
        await upstream.invoke("m", {"max_tokens": 1}, beta=(), timeout=5)
    assert refused.value.status == 429 and refused.value.code == "ThrottlingException"
    assert not refused.value.possibly_billed
    assert server.received[0].target == "/model/m/invoke"


async def test_a_client_behind_a_proxy_sends_through_botocores_own_session(server: Server, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # an https endpoint would go through it
    made = client("dynamodb", server.url)
    sent_by: list[str] = []
    original = made._endpoint.http_session.send
    monkeypatch.setattr(
        made._endpoint.http_session,
        "send",
        lambda request: sent_by.append(threading.current_thread().name) or original(request),
    )
    server.script = [json_answer(200, {"Item": KEY})]
    assert (await call(made, "get_item", TableName="usage", Key=KEY))["Item"] == KEY
    assert len(sent_by) == 1 and sent_by[0] != threading.main_thread().name


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (openssl), as (cert file, key file)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_is_verified_against_the_clients_ca_bundle(certificate) -> None:
    import ssl

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = Server(default=json_answer(200, {"Item": KEY}))
    listener = await asyncio.start_server(state.serve, "127.0.0.1", 0, ssl=context)
    url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        once = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
        trusted = client("dynamodb", url, verify=str(cert), **once)
        assert (await call(trusted, "get_item", TableName="usage", Key=KEY))["Item"] == KEY
        assert signature_holds(state.received[0])
        untrusted = client("dynamodb", url, **once)  # botocore's own CA bundle: it does not know this one
        from botocore.exceptions import SSLError

        with pytest.raises(SSLError):
            await call(untrusted, "get_item", TableName="usage", Key=KEY)
        assert len(state.received) == 1
    finally:
        listener.close()
        await aws_loop.aclose()


async def test_credentials_that_need_refreshing_are_refreshed_on_a_thread(server: Server) -> None:
    from botocore.credentials import RefreshableCredentials

    refreshed_on: list[str] = []

    def refresh() -> dict[str, str]:
        refreshed_on.append(threading.current_thread().name)
        return {
            "access_key": "AKIDEXAMPLE",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": "2999-01-01T00:00:00Z",
        }

    made = client("dynamodb", server.url)
    expired = RefreshableCredentials.create_from_metadata(
        {"access_key": "old", "secret_key": "old", "token": "old", "expiry_time": "2000-01-01T00:00:00Z"},
        refresh,
        "test",
    )
    made._request_signer._credentials = expired
    await call(made, "get_item", TableName="usage", Key=KEY)
    assert refreshed_on and threading.main_thread().name not in refreshed_on
    assert signature_holds(server.received[0])  # signed with the refreshed key


async def test_only_the_call_being_built_is_handed_over(server: Server) -> None:
    # A before-call hook that makes a (blocking) call of its own on another client: that one is botocore's,
    # whole, not handed over as if it were the call being built.
    made, other = client("dynamodb", server.url), client("dynamodb", server.url)
    await call(other, "get_item", TableName="usage", Key=KEY)  # the other client knows the loop path too

    class Raw:
        def stream(self, **_: Any):
            yield json.dumps({"Item": KEY}).encode()

    other.meta.events.register(
        "before-send.dynamodb.GetItem", lambda request, **_: AWSResponse(request.url, 200, {}, Raw())
    )
    inner: list[Any] = []
    made.meta.events.register(
        "before-call.dynamodb.PutItem", lambda **_: inner.append(other.get_item(TableName="usage", Key=KEY)["Item"])
    )
    await call(made, "put_item", TableName="usage", Item=KEY)
    assert inner == [KEY]
    assert [json.loads(r.body).get("Item") for r in server.received] == [None, KEY]  # the first GetItem, the put
