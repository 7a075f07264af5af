"""Model lifecycles through the app with the official SDK: a retired model is a 404 that names its
replacement (and is not listed); a deprecated one is served with deprecation and sunset headers."""

from __future__ import annotations

import anthropic
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")]
HELLO = [{"role": "user", "content": "hello"}]


def test_a_retired_model_is_a_404_naming_its_replacement(caller) -> None:
    caller.stack.reset_counts()
    with pytest.raises(anthropic.NotFoundError) as gone:
        caller.client.messages.create(model="claude-sonnet-4", max_tokens=8, messages=HELLO)

    error = gone.value.body["error"]
    assert error["type"] == "not_found_error"
    assert "retired" in error["message"] and "claude-sonnet-4-6" in error["message"]
    assert caller.stack.recent_requests() == []  # no upstream was asked
    assert "claude-sonnet-4-20250514" not in {m.id for m in caller.client.models.list()}


def test_a_deprecated_model_is_served_with_its_end_of_life(caller) -> None:
    raw = caller.client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=8, messages=HELLO)

    assert raw.parse().type == "message"
    assert raw.headers["deprecation"] == "true"
    assert raw.headers["sunset"] == "Mon, 30 Nov 2026 00:00:00 GMT"
    assert raw.headers["x-gateway-model-replacement"] == "claude-sonnet-5-5"


def test_an_active_model_carries_no_deprecation(caller) -> None:
    raw = caller.client.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=8, messages=HELLO)

    assert raw.parse().type == "message" and "deprecation" not in raw.headers and "sunset" not in raw.headers
