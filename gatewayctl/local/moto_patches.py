"""Where moto differs from AWS in a way that would make the local stack lie, and the patch for it."""

from __future__ import annotations

_lock = None


def serialize_dynamodb() -> None:
    """Make the in-process moto server apply DynamoDB requests one at a time, as DynamoDB is atomic per item.

    moto's DynamoDB backend takes no lock: under load, two concurrent `ADD`s (or a transaction and an
    `ADD`) on one item can interleave their read-modify-write and lose an update, which real DynamoDB
    never does. Concurrency tests would then measure moto, not the gateway. Idempotent; process-wide.
    """
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
