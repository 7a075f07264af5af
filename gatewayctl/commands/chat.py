"""gatewayctl chat: send one message through the gateway with the official anthropic SDK.

The reply streams to stdout as it arrives (or comes whole with --no-stream); usage goes to stderr.
It uses the token `gatewayctl login` saved (as `gatewayctl token` does), so it is also a smoke test
of the whole path: authorizer, tenancy, quota, audit, failover, the model.
"""

from __future__ import annotations

import sys
from typing import Any

from gatewayctl.options import positive_int
from gatewayctl.output import CommandError


def register(sub: Any) -> None:
    parser = sub.add_parser("chat", help="send a message through the gateway and print the reply")
    parser.add_argument("prompt", nargs="+", help="the message (words are joined)")
    parser.add_argument(
        "--model", default="claude-haiku-4-5", help="alias or model id (default claude-haiku-4-5)"
    )
    parser.add_argument("--max-tokens", type=positive_int, default=1024)
    parser.add_argument("--system", default=None)
    parser.add_argument("--no-stream", action="store_true", help="wait for the whole reply")
    parser.set_defaults(func=_chat)


def _chat(args: Any) -> int:
    import anthropic  # lazily: it costs about a second to import

    from gatewayctl import credentials

    token, endpoint = credentials.session(args)
    client = anthropic.Anthropic(base_url=endpoint, auth_token=token, max_retries=0)
    request: dict[str, Any] = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "messages": [{"role": "user", "content": " ".join(args.prompt)}],
    }
    if args.system:
        request["system"] = args.system
    try:
        if args.no_stream:
            message = client.messages.create(**request)
            print("".join(b.text for b in message.content if b.type == "text"))
        else:
            with client.messages.stream(**request) as stream:
                for text in stream.text_stream:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                message = stream.get_final_message()
            sys.stdout.write("\n")
    except anthropic.APIStatusError as exc:
        error = exc.body.get("error", {}) if isinstance(exc.body, dict) else {}
        raise CommandError(
            f"{exc.status_code} {error.get('type', 'error')}: {error.get('message', exc)}"
        ) from None
    except anthropic.APIConnectionError as exc:
        raise CommandError(f"cannot reach the gateway at {endpoint}: {exc}") from None
    usage = message.usage
    print(
        f"[{message.model}, stop {message.stop_reason}, {usage.input_tokens} in / {usage.output_tokens} out]",
        file=sys.stderr,
    )
    return 0
