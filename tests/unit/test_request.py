"""Parsing a Messages API body: tolerant of what it does not know, strict about what it acts on."""

from __future__ import annotations

import json

import pytest
from gateway.domain.errors import InvalidRequestError, RequestTooLargeError
from gateway.domain.request import IMAGE_TOKEN_ESTIMATE, parse_beta_header, parse_messages_request

LIMIT = 1 << 20


def parse(body: dict, **kw):
    return parse_messages_request(json.dumps(body).encode(), max_body_bytes=LIMIT, **kw)


BASE = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "abcd" * 10}]}


def test_reads_the_policy_fields_and_keeps_the_body() -> None:
    body = {**BASE, "stream": True, "unknown_top_level": [1], "metadata": {"user_id": "u"}}
    request = parse(body)

    assert (request.model, request.max_tokens, request.stream) == ("claude-haiku-4-5", 10, True)
    assert request.body == body
    assert not request.uses_tools and not request.has_images
    assert request.estimated_input_tokens == 10
    assert len(request.body_sha256) == 64


def test_tools_and_images_are_detected() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100000}}
    request = parse(
        {
            **BASE,
            "tools": [{"name": "t", "input_schema": {}}],
            "messages": [{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}],
        }
    )

    assert request.uses_tools and request.has_images
    # The base64 data is not counted as text.
    assert request.estimated_input_tokens < IMAGE_TOKEN_ESTIMATE + 100


def test_tool_results_count_as_tool_use() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]},
    ]
    assert parse({**BASE, "messages": messages}).uses_tools


def test_unknown_block_types_are_accepted() -> None:
    request = parse(
        {**BASE, "messages": [{"role": "user", "content": [{"type": "hologram", "data": {"x": 1}}]}]}
    )
    assert request.body["messages"][0]["content"][0]["type"] == "hologram"


@pytest.mark.parametrize(
    "change",
    [
        {"model": None},
        {"model": ""},
        {"max_tokens": None},
        {"max_tokens": True},
        {"max_tokens": 0},
        {"max_tokens": "5"},
        {"stream": "true"},
        {"messages": []},
        {"messages": "hello"},
        {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
        {"metadata": "x"},
    ],
)
def test_wrong_types_of_what_the_gateway_reads_are_invalid_requests(change: dict) -> None:
    body = {**BASE, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidRequestError):
        parse(body)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "mid-conversation"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        {"system": 5},
        {"stop_sequences": True},
        {"temperature": "hot"},
    ],
    ids=["system-role", "content-int", "text-int", "system-int", "stop-sequences-bool", "temperature-str"],
)
def test_what_the_gateway_does_not_read_passes_through_for_the_upstream_to_judge(change: dict) -> None:
    body = {**BASE, **change}
    assert parse(body).body == body


def test_tools_of_any_shape_need_the_tools_permission() -> None:
    assert parse({**BASE, "tools": {}}).fields == ("tools",) and not parse({**BASE, "tools": {}}).uses_tools
    assert parse({**BASE, "tools": [{"name": "t", "input_schema": {}}]}).uses_tools


def test_count_tokens_needs_no_max_tokens() -> None:
    body = {k: v for k, v in BASE.items() if k != "max_tokens"}
    assert parse(body, require_max_tokens=False).estimated_input_tokens == 10


def test_encoding_and_size() -> None:
    with pytest.raises(InvalidRequestError, match="UTF-8"):
        parse_messages_request(b'{"model": "\xff"}', max_body_bytes=LIMIT)
    with pytest.raises(InvalidRequestError, match="JSON"):
        parse_messages_request(b"{", max_body_bytes=LIMIT)
    with pytest.raises(RequestTooLargeError):
        parse_messages_request(b"{}" * 600, max_body_bytes=1024)


def test_beta_header() -> None:
    assert parse_beta_header("a-2025, b ,") == ("a-2025", "b")
    assert parse_beta_header(None) == ()


def raw_parse(raw: bytes, **kw):
    return parse_messages_request(raw, max_body_bytes=LIMIT, **kw)


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_deeply_nested_body_is_bad_input_not_a_crash(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    raw = json.dumps(BASE)[:-1] + f', "x": {nested}}}'
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        raw_parse(raw.encode())


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused(constant: str) -> None:
    raw = json.dumps(BASE)[:-1] + f', "temperature": {constant}}}'
    with pytest.raises(InvalidRequestError, match=constant.lstrip("-")):
        raw_parse(raw.encode())


@pytest.mark.parametrize(
    "value",
    [10**400, 10**130, 128_001, True, False, 1.5, "10"],
    ids=["1e400", "1e130", "over-ceiling", "true", "false", "float", "string"],
)
def test_max_tokens_must_be_a_bounded_positive_integer(value) -> None:
    raw = json.dumps(BASE)[:-1].replace('"max_tokens": 10', f'"max_tokens": {json.dumps(value)}') + "}"
    assert json.loads(raw)["max_tokens"] == value
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        raw_parse(raw.encode())


def test_max_tokens_at_the_ceiling_is_accepted_and_checked_on_count_tokens_too() -> None:
    from gateway.domain.request import MAX_TOKENS_CEILING

    assert parse({**BASE, "max_tokens": MAX_TOKENS_CEILING}).max_tokens == MAX_TOKENS_CEILING
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        parse({**BASE, "max_tokens": 10**400}, require_max_tokens=False)


def document(source: dict) -> dict:
    body = {**BASE, "max_tokens": 10}
    body["messages"] = [{"role": "user", "content": [{"type": "document", "source": source}]}]
    return body


def test_a_base64_document_is_estimated_from_its_size_not_a_flat_figure() -> None:
    import base64

    pdf = base64.b64encode(b"%PDF" + b"x" * 399_996).decode()  # 400 kB decoded
    request = parse_messages_request(
        json.dumps(document({"type": "base64", "media_type": "application/pdf", "data": pdf})).encode(),
        max_body_bytes=4 * LIMIT,
    )

    # about a token per 4 bytes: 100k tokens, far above the flat image figure
    assert 99_000 <= request.estimated_input_tokens <= 101_000
    assert request.has_images  # documents still need the vision permission, as before


def test_text_and_content_documents_count_their_text_and_a_url_document_the_flat_figure() -> None:
    text = parse(document({"type": "text", "media_type": "text/plain", "data": "abcd" * 5000}))
    content = parse(document({"type": "content", "content": [{"type": "text", "text": "abcd" * 3000}]}))
    url = parse(document({"type": "url", "url": "https://example.com/a.pdf"}))

    assert text.estimated_input_tokens == 5000
    assert content.estimated_input_tokens == 3000
    assert url.estimated_input_tokens == IMAGE_TOKEN_ESTIMATE


def test_a_small_base64_pdf_costs_at_least_a_page_image() -> None:
    import base64

    pdf = base64.b64encode(b"%PDF" + b"x" * 996).decode()  # 1 kB decoded: 250 tokens of text
    request = parse(document({"type": "base64", "media_type": "application/pdf", "data": pdf}))

    assert request.estimated_input_tokens == IMAGE_TOKEN_ESTIMATE


def test_a_content_document_counts_its_image_blocks() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}
    content = parse(
        document({"type": "content", "content": [{"type": "text", "text": "abcd" * 1000}, image, image]})
    )

    assert content.estimated_input_tokens == 1000 + 2 * IMAGE_TOKEN_ESTIMATE
