"""Circuit breakers per upstream (provider + region + model), shared across containers without a serial round trip.

Each container keeps the state in memory and decides from it alone. Transitions (closed -> open,
open -> closed) are written to the shared store fire-and-forget; the shared state is read back in the
background at most every `refresh_seconds`, and the newer of local and shared wins. So a region that one
container saw throttling is skipped by the others within seconds, and no request waits on DynamoDB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from gateway.domain.ports import BreakerStore

CLOSED, OPEN = "closed", "open"


@dataclass(frozen=True)
class BreakerState:
    state: Literal["closed", "open"] = CLOSED
    opened_until: float = 0.0  # epoch seconds; after it the breaker lets trial requests through
    updated_at: float = 0.0  # epoch seconds of the last transition; the newer state wins a merge
    failures: int = 0  # consecutive failures seen by this container (not shared)


def breaker_key(provider: str, region: str, model_id: str | None = None) -> str:
    """One breaker per provider, region and model: one model's throttling does not close a region for
    every other model."""
    return f"{provider}#{region}" if model_id is None else f"{provider}#{region}#{model_id}"


class Breakers:
    def __init__(
        self,
        *,
        failure_threshold: int,
        open_seconds: float,
        store: BreakerStore | None = None,
        spawn: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.store = store
        self.spawn = spawn
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._states: dict[str, BreakerState] = {}
        self._last_refresh = float("-inf")
        self._refreshing = False

    def keys(self) -> list[str]:
        """The breakers this container holds a state for."""
        return list(self._states)

    def get(self, key: str) -> BreakerState:
        return self._states.get(key, BreakerState())

    def status(self, key: str) -> str:
        """closed, open, or half_open (open but past its cool-down: trial requests go through)."""
        state = self.get(key)
        if state.state == CLOSED:
            return "closed"
        return "open" if self.clock() < state.opened_until else "half_open"

    def allows(self, key: str) -> bool:
        return self.status(key) != "open"

    def record_success(self, key: str) -> None:
        state = self.get(key)
        if state.state == OPEN:
            self._transition(key, BreakerState(CLOSED, 0.0, self.clock(), 0))
        elif state.failures:
            self._states[key] = replace(state, failures=0)

    def record_failure(self, key: str) -> None:
        state = self.get(key)
        now = self.clock()
        failures = state.failures + 1
        if state.state == OPEN and now >= state.opened_until:
            # A failed trial request: open again for another cool-down.
            self._transition(key, BreakerState(OPEN, now + self.open_seconds, now, failures))
        elif state.state == CLOSED and failures >= self.failure_threshold:
            self._transition(key, BreakerState(OPEN, now + self.open_seconds, now, failures))
        else:
            self._states[key] = replace(state, failures=failures)

    def _transition(self, key: str, new: BreakerState) -> None:
        self._states[key] = new
        if self.store is not None and self.spawn is not None:
            self.spawn(self._save(key, new))

    async def _save(self, key: str, state: BreakerState) -> None:
        assert self.store is not None
        await self.store.save(key, state)

    def maybe_refresh(self, keys: Iterable[str]) -> None:
        """Start a background read of the shared state if the last one is old; never waits for it."""
        if self.store is None or self.spawn is None or self._refreshing:
            return
        now = time.monotonic()
        if now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        self._refreshing = True
        self.spawn(self.refresh(list(keys)))

    async def refresh(self, keys: list[str]) -> None:
        assert self.store is not None
        try:
            shared = await self.store.load(keys)
        finally:
            self._refreshing = False
        self.merge(shared)

    def merge(self, shared: dict[str, BreakerState]) -> None:
        for key, remote in shared.items():
            local = self.get(key)
            if remote.updated_at > local.updated_at:
                self._states[key] = replace(remote, failures=0 if remote.state == CLOSED else local.failures)
