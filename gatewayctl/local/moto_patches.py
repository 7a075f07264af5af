"""Where moto differs from AWS in a way that would make the local stack lie, and the patch for it."""

from __future__ import annotations

_lock = None


def serialize_dynamodb() -> None:
    """Make the in-process moto server apply DynamoDB requests one at a time, as DynamoDB is atomic per item.

    moto's DynamoDB backend takes no lock: under load, two concurrent `ADD`s (or a transaction and an
    `ADD`) on one item can interleave their read-modify-write and lose an update, which real DynamoDB
    never does. Concurrency tests would then measure moto, not the gateway. Idempotent; process-wide.
    It also makes moto honour ClientRequestToken (below): both are what the local stack's DynamoDB needs.
    """
    honour_client_request_tokens()
    global _lock
    if _lock is not None:
        return
    import threading

    from moto.dynamodb.responses import DynamoHandler

    _lock = threading.RLock()
    unlocked = DynamoHandler.call_action

    def call_action(self):
        with _lock:
            return unlocked(self)

    DynamoHandler.call_action = call_action


# -- DynamoDB: ClientRequestToken ------------------------------------------------------------------------
#
# moto ignores TransactWriteItems' ClientRequestToken and applies every call, so a retried transaction
# whose first answer was lost is applied twice locally where DynamoDB applies it once. DynamoDB's rules
# (API reference, TransactWriteItems, ClientRequestToken; developer guide, "Amazon DynamoDB Transactions:
# How it works", Idempotency): a repeat with the same token within 10 minutes of the first request's
# completion succeeds without making any changes; the same token with other parameters in that window is
# answered IdempotentParameterMismatchException; after 10 minutes the token is new again.
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-apis-txwriteitems-idempotency

TOKEN_WINDOW_SECONDS = 600.0
token_clock = None  # a callable returning seconds; None: time.monotonic (tests move it)
_tokens: dict | None = None


def honour_client_request_tokens() -> None:
    """Make the in-process moto server apply a TransactWriteItems once per ClientRequestToken, as DynamoDB
    does. Idempotent; process-wide. Only successful transactions are remembered: a cancelled one made no
    change, and its token may be sent again (the gateway starts a new attempt with a new token anyway)."""
    global _tokens
    if _tokens is not None:
        return
    import json
    import threading
    import time

    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.responses import DynamoHandler

    class IdempotentParameterMismatch(JsonRESTError):
        def __init__(self) -> None:
            super().__init__(
                "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                "A request with this client token was already made with other parameters",
            )

    _tokens = {}
    lock = threading.Lock()
    unpatched = DynamoHandler.transact_write_items

    def transact_write_items(self):
        body = getattr(self, "body", None) or {}
        token = body.get("ClientRequestToken")
        if not token:
            return unpatched(self)
        clock = token_clock or time.monotonic
        params = json.dumps({k: v for k, v in body.items() if k != "ClientRequestToken"}, sort_keys=True, default=str)
        key = (self.current_account, self.region, token)
        with lock:
            now = clock()
            for stale in [k for k, (_, _, done) in _tokens.items() if now - done > TOKEN_WINDOW_SECONDS]:
                del _tokens[stale]
            seen = _tokens.get(key)
            if seen is not None:
                if seen[0] != params:
                    raise IdempotentParameterMismatch()
                return seen[1]
            result = unpatched(self)
            _tokens[key] = (params, result, clock())
            return result

    DynamoHandler.transact_write_items = transact_write_items


def forget_client_request_tokens() -> None:
    """Forget every remembered token, as if ten minutes had passed (tests)."""
    if _tokens is not None:
        _tokens.clear()
