"""The user pool's app clients, as the local authorizer checks a token's client_id against them."""

from __future__ import annotations

import time
from typing import Any


class PoolClients:
    """The pool's app clients, listed from Cognito and listed again when a token names an unknown one
    (machine clients are created at run time by `gatewayctl client create`); locally listing is cheap."""

    def __init__(self, cognito: Any, pool_id: str, *, min_refresh_seconds: float = 0.0) -> None:
        self.cognito, self.pool_id, self.min_refresh_seconds = cognito, pool_id, min_refresh_seconds
        self._ids: frozenset[str] = frozenset()
        self._listed_at = float("-inf")

    def __contains__(self, client_id: object) -> bool:
        if client_id in self._ids:
            return True
        if time.monotonic() - self._listed_at >= self.min_refresh_seconds:
            self._listed_at = time.monotonic()
            ids: set[str] = set()
            for page in self.cognito.get_paginator("list_user_pool_clients").paginate(
                UserPoolId=self.pool_id, MaxResults=60
            ):
                ids.update(c["ClientId"] for c in page["UserPoolClients"])
            self._ids = frozenset(ids)
        return client_id in self._ids
