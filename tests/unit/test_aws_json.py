"""The lean AWS JSON-protocol client's pure parts: it signs as botocore signs, maps errors to botocore's
exceptions with the same response shape, retries what botocore's standard mode retries, and encodes
bytes as base64. Over HTTP it is tested against moto (tests/integration/test_aws_json.py)."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ReadTimeoutError
from gateway.adapters import aws_json
from gateway.adapters.aws_json import JsonClient, endpoint_for, operation_name

FROZEN = datetime.datetime(2026, 11, 23, 5, 33, 7)


def client(**kwargs: Any) -> JsonClient:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", kwargs.pop("token", "tok"))
    return JsonClient("dynamodb", "eu-west-1", credentials=credentials, endpoint_url="http://127.0.0.1:4566", **kwargs)


@pytest.mark.parametrize("token", ["tok", None])
def test_the_signature_is_the_one_botocore_computes(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    import botocore.auth

    lean = client(token=token)
    monkeypatch.setattr(aws_json.time, "gmtime", lambda *_: FROZEN.timetuple())
    body = b'{"TableName":"t","Key":{"pk":{"S":"a"}}}'
    ours = lean._signed_headers("GetItem", body)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_: FROZEN)
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:4566/",
        data=body,
        headers={k: v for k, v in ours.items() if k not in ("authorization", "x-amz-date", "x-amz-security-token")},
    )
    botocore.auth.SigV4Auth(lean._credentials, "dynamodb", "eu-west-1").add_auth(request)

    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


def test_an_error_is_botocores_client_error_with_the_same_response_shape() -> None:
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": [{"Code": "ConditionalCheckFailed", "Item": {"pk": {"S": "a"}}}, {"Code": "None"}],
    }
    with pytest.raises(ClientError) as caught:
        aws_json._parsed("TransactWriteItems", 400, {"x-amzn-requestid": "r1"}, json.dumps(body).encode(), 1)

    response = caught.value.response
    assert response["Error"] == {"Code": "TransactionCanceledException", "Message": body["Message"]}
    assert response["CancellationReasons"][0]["Code"] == "ConditionalCheckFailed"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RequestId"] == "r1"
    assert caught.value.operation_name == "TransactWriteItems"


def test_a_success_answers_the_json_with_response_metadata() -> None:
    parsed = aws_json._parsed("GetItem", 200, {}, b'{"Item":{"pk":{"S":"a"}}}', 2)
    assert parsed["Item"] == {"pk": {"S": "a"}}
    assert parsed["ResponseMetadata"]["RetryAttempts"] == 1


def test_throttling_and_transient_failures_are_retried_up_to_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    lean = client(max_attempts=3)
    monkeypatch.setattr(aws_json, "_backoff", lambda attempt: 0.0)
    failures = [
        aws_json._client_error("PutItem", 400, {"__type": "x#ProvisionedThroughputExceededException"}, _meta(400)),
        ReadTimeoutError(endpoint_url="http://x"),
    ]
    sent: list[int] = []

    def send(operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        sent.append(attempt)
        if failures:
            raise failures.pop(0)
        return {"ok": True}

    monkeypatch.setattr(lean, "_send", send)
    assert lean.put_item(TableName="t", Item={}) == {"ok": True}
    assert sent == [1, 2, 3]


def test_a_client_fault_is_not_retried_and_attempts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    lean = client(max_attempts=2)
    monkeypatch.setattr(aws_json, "_backoff", lambda attempt: 0.0)
    sent: list[str] = []

    def refused(operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        sent.append(operation)
        raise aws_json._client_error(operation, 400, {"__type": "x#ConditionalCheckFailedException"}, _meta(400))

    monkeypatch.setattr(lean, "_send", refused)
    with pytest.raises(ClientError):
        lean.update_item(TableName="t", Key={})
    assert sent == ["UpdateItem"]

    def unavailable(operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        sent.append(operation)
        raise aws_json._client_error(operation, 503, {}, _meta(503))

    sent.clear()
    monkeypatch.setattr(lean, "_send", unavailable)
    with pytest.raises(ClientError):
        lean.get_item(TableName="t", Key={})
    assert sent == ["GetItem", "GetItem"]


def test_bytes_go_as_base64_and_method_names_map_to_operations() -> None:
    assert json.loads(aws_json._dumps({"Data": b"hi\n"})) == {"Data": "aGkK"}
    assert operation_name("transact_write_items") == "TransactWriteItems"
    assert operation_name("put_record") == "PutRecord"


def test_endpoints_follow_botocores_variables() -> None:
    assert endpoint_for("kinesis", "eu-west-1", {}) == "https://kinesis.eu-west-1.amazonaws.com"
    assert endpoint_for("dynamodb", "cn-north-1", {}) == "https://dynamodb.cn-north-1.amazonaws.com.cn"
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000/", "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:6000"}
    assert endpoint_for("kinesis", "eu-west-1", env) == "http://127.0.0.1:6000"
    assert endpoint_for("dynamodb", "eu-west-1", env) == "http://127.0.0.1:5000"
    ignored = {**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
    assert endpoint_for("dynamodb", "eu-west-1", ignored) == "https://dynamodb.eu-west-1.amazonaws.com"


def test_the_signing_key_is_derived_once_a_day() -> None:
    lean = client()
    first = lean._key("secret", "20261123")
    assert lean._key("secret", "20261123") is first
    assert lean._key("secret", "20261124") != first


def _meta(status: int) -> dict[str, Any]:
    return {"RequestId": "", "HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0, "at": time.time()}
