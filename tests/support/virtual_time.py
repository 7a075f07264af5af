"""An asyncio event loop on virtual time, for running the real quota code against the DynamoDB model.

Time stands still while there is work to do and jumps to the next timer when there is none, so a run
measures what the model says DynamoDB takes (its latencies, conflicts, throttling) and not this machine's
CPU. Executor calls (`asyncio.to_thread`, how the adapters call botocore) run at once, in the loop's
thread; their answer is delivered `delay()` seconds of virtual time later (the model's latency).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:  # nothing scheduled and nothing ready: no virtual time can help
            raise RuntimeError("the virtual-time loop has nothing left to run")
        self._loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, delay: Callable[[], float] | None = None) -> None:
        self.now = 0.0
        self._delay = delay or (lambda: 0.0)
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.create_future()
        try:
            result, error = func(*args), None
        except BaseException as exc:  # delivered to the awaiting task, as a thread's would be
            result, error = None, exc
        delay = self._delay()

        def deliver() -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        self.call_later(delay, deliver)
        return future


def run(main: Coroutine[Any, Any, T], *, delay: Callable[[], float] | None = None) -> tuple[T, float]:
    """Run `main` on a fresh virtual-time loop: (its result, the virtual seconds it took)."""
    loop = VirtualTimeLoop(delay)
    try:
        asyncio.set_event_loop(loop)
        result = loop.run_until_complete(main)
        return result, loop.now
    finally:
        asyncio.set_event_loop(None)
        loop.close()
