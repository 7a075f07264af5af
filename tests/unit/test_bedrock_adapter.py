"""The Bedrock adapter's pure parts: the body it sends and how it classifies Bedrock's errors."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, EventStreamError, ReadTimeoutError
from gateway.adapters.bedrock import BEDROCK_VERSION, bedrock_body, classify
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY


def test_body_drops_model_and_stream_and_sets_the_version() -> None:
    body = {
        "model": "m",
        "stream": True,
        "max_tokens": 5,
        "messages": [],
        "anthropic_version": "2023-06-01",
        "future": {"x": "é"},
    }
    sent = json.loads(bedrock_body(body, ("beta-1",)))

    assert sent == {
        "max_tokens": 5,
        "messages": [],
        "anthropic_version": BEDROCK_VERSION,
        "future": {"x": "é"},
        "anthropic_beta": ["beta-1"],
    }
    assert "model" in body  # the caller's dict is not changed


def client_error(code: str, status: int | None) -> ClientError:
    meta = {"HTTPStatusCode": status} if status else {}
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code}!"}, "ResponseMetadata": meta}, "InvokeModel"
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "error_type"),
    [
        ("ThrottlingException", 429, NEXT, "rate_limit_error"),
        ("ModelNotReadyException", 429, NEXT, "rate_limit_error"),
        ("ServiceUnavailableException", 503, NEXT, "api_error"),
        ("InternalServerException", 500, NEXT, "api_error"),
        ("ModelErrorException", 424, RETRY, "api_error"),
        ("ValidationException", 400, CLIENT, "invalid_request_error"),
        ("ServiceQuotaExceededException", 400, CLIENT, "invalid_request_error"),
        ("AccessDeniedException", 403, MISCONFIG, "permission_error"),
        ("ResourceNotFoundException", 404, MISCONFIG, "not_found_error"),
        ("SomethingNew", 529, NEXT, "overloaded_error"),
    ],
)
def test_client_errors(code: str, status: int, kind: str, error_type: str) -> None:
    failure = classify(client_error(code, status))
    assert (failure.kind, failure.status, failure.error_type, failure.code) == (
        kind,
        status,
        error_type,
        code,
    )
    assert failure.message == f"{code}!"


def test_stream_exceptions_have_lower_case_names_and_no_status() -> None:
    error = EventStreamError(
        {"Error": {"Code": "modelStreamErrorException", "Message": "boom"}}, "InvokeModelWithResponseStream"
    )
    failure = classify(error)
    assert (failure.kind, failure.status, failure.code) == (RETRY, 424, "ModelStreamErrorException")
    throttled = classify(EventStreamError({"Error": {"Code": "throttlingException", "Message": "x"}}, "op"))
    assert (throttled.kind, throttled.status) == (NEXT, 429)


def test_connection_problems_fail_over() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://x")).kind == NEXT
    assert classify(ReadTimeoutError(endpoint_url="http://x")).kind == NEXT
    # The request was sent before the read timed out: Bedrock may still run it; a refused connection never ran.
    assert classify(ReadTimeoutError(endpoint_url="http://x")).possibly_billed
    assert not classify(EndpointConnectionError(endpoint_url="http://x")).possibly_billed


class AcceptThenFail:
    """A bedrock-runtime client whose stream is accepted, then fails before its first event."""

    def invoke_model_with_response_stream(self, **kwargs):
        def events():
            raise EventStreamError(
                {"Error": {"Code": "modelStreamErrorException", "Message": "boom"}}, "InvokeModelWithResponseStream"
            )
            yield  # pragma: no cover

        return {"body": events()}

    def invoke_model(self, **kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel")


@pytest.mark.anyio
async def test_a_stream_that_fails_after_it_was_accepted_is_possibly_billed_a_refusal_is_not() -> None:
    from gateway.adapters.bedrock import BedrockUpstream
    from gateway.domain.failover import UpstreamFailure

    from tests.unit.runtime_fakes import settings

    upstream = BedrockUpstream(settings(), "us-east-1", client=AcceptThenFail())
    with pytest.raises(UpstreamFailure) as accepted:
        async for _ in upstream.stream("m", {"max_tokens": 1}, beta=(), timeout=5):
            pass
    with pytest.raises(UpstreamFailure) as refused:
        await upstream.invoke("m", {"max_tokens": 1}, beta=(), timeout=5)

    assert accepted.value.possibly_billed and accepted.value.code == "ModelStreamErrorException"
    assert not refused.value.possibly_billed and refused.value.status == 429
