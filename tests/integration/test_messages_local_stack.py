"""The whole request path on the local stack: real Cognito tokens (moto), DynamoDB tenancy and quota,
the Kinesis audit sink, the Bedrock/Vertex emulators, and the anthropic SDK as the client."""

from __future__ import annotations

import anthropic
import pytest

pytestmark = pytest.mark.integration
MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "hello there"}]


def test_create_and_stream_with_a_cognito_token(make_tenant, make_user, gateway_client, faults) -> None:
    user = make_user(make_tenant("us"), roles=("basic_user",))
    with gateway_client(user.token) as client:
        message = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)
        with client.messages.stream(model=MODEL, max_tokens=32, messages=HELLO) as stream:
            final = stream.get_final_message()

    assert message.content[0].text and message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert final.content[0].text == message.content[0].text  # the emulator is deterministic
    assert final.usage.output_tokens == message.usage.output_tokens
    assert faults.request_counts()["us-east-1"]["total"] == 2


def test_region_throttling_fails_over_on_the_local_stack(
    make_tenant, make_user, gateway_client, faults
) -> None:
    user = make_user(make_tenant("us"), roles=("basic_user",))
    faults.set_fault("us-east-1", "throttle", count=1)
    with gateway_client(user.token) as client:
        message = client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)

    assert message.content[0].text
    counts = faults.request_counts()
    assert (counts["us-east-1"]["total"], counts["us-west-2"]["total"]) == (1, 1)


def test_models_lists_what_the_role_allows(make_tenant, make_user, gateway_client, local_stack) -> None:
    user = make_user(make_tenant("us"), roles=("basic_user",))
    with gateway_client(user.token) as client:
        ids = [m.id for m in client.models.list()]

    assert "claude-haiku-4-5-20251001" in ids
    assert not any("opus" in model_id for model_id in ids)  # basic_user has no opus


@pytest.mark.parametrize("token", ["", "not-a-jwt", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"])
def test_bad_tokens_are_401_and_reach_no_model(token, gateway_client, faults) -> None:
    with gateway_client(token or "x") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model=MODEL, max_tokens=16, messages=HELLO)
    assert sum(c["total"] for c in faults.request_counts().values()) == 0
