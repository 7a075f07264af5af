"""RequestEnd: the one object that owns how a request ends.

It alone sets the exchange's outcome, status and error type; it settles, keeps or releases the
reservation (settlement.py decides which) and writes the outcome record, once, whichever way the
request ends: a whole reply, a relayed stream, an unsent stream, an error or refusal, a cancellation.

`finish()` runs after the client has its bytes but before the response ends: in Lambda the
execution environment may be frozen once the response ends, which would lose work still running.
It is bounded: past `cap_seconds` the response ends and the work goes on in the background set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from gateway import observability
from gateway.domain import pricing
from gateway.domain.background import Background
from gateway.domain.catalog import Catalog
from gateway.domain.errors import ApiError, GatewayError
from gateway.domain.ports import AuditSink, Metrics, Quota, Reservation
from gateway.domain.settlement import Charge, settlement
from gateway.domain.sse import usage_from_message
from gateway.models.exchange import Exchange, Usage
from gateway.observability import log


class RequestEnd:
    def __init__(
        self,
        exchange: Exchange,
        *,
        catalog: Catalog,
        quota: Quota,
        audit: AuditSink,
        background: Background,
        metrics: Metrics | None,
        cap_seconds: float,
        calls_model: bool,
    ) -> None:
        self.exchange = exchange
        self.catalog = catalog
        self.quota = quota
        self.audit = audit
        self.background = background
        self.metrics = metrics
        self.cap_seconds = cap_seconds
        # On the model route every request with an identity gets an outcome record; elsewhere only refusals.
        self.calls_model = calls_model
        self.reservation: Reservation | None = None  # set once the failover chain is entered
        self.bound: Charge | None = None  # a cut-short stream's usage bound
        self.finished = False
        # Work that must run first when the request finishes (a whole reply's accounting, an unsent
        # stream's clean-up); set by the step that knows it.
        self.before_finish: Callable[[], Awaitable[None]] | None = None

    # -- verdicts: the only writers of outcome, status and error_type ------------------------------

    def served(self, provider: str, usage: Usage | None) -> None:
        """`usage` None: the reply reported none the gateway can read (settlement keeps the reservation)."""
        exchange = self.exchange
        exchange.status = 200
        exchange.outcome = "response"
        exchange.usage = usage
        exchange.cost_usd = None
        if usage is not None and exchange.decision is not None:
            region = exchange.served_by.region if exchange.served_by is not None else None
            exchange.cost_usd = pricing.cost(self.catalog, exchange.decision, provider, usage, region)

    def served_whole(self, body: bytes, provider: str) -> None:
        """A whole reply went out: its hash and usage are read when the request finishes, after the
        client has the body (they feed only settlement and the audit record)."""
        self.exchange.first_byte_at = time.time()

        async def account() -> None:
            self.exchange.response_sha256 = hashlib.sha256(body).hexdigest()
            self.served(provider, usage_from_message(_json_or_none(body)))

        self.before_finish = account

    def streaming(self) -> None:
        self.exchange.status = 200

    def cut_short(self, error_type: str | None, bound: Charge | None) -> None:
        """A stream that did not complete: the usage seen is not final."""
        self.exchange.outcome = "error"
        self.exchange.error_type = error_type or self.exchange.error_type or "client_disconnected"
        self.bound = bound

    def stream_error(self, error_type: str) -> None:
        """An error after the first byte: the stream ends with an error event (no failover)."""
        self.exchange.error_type = error_type

    def client_gone(self) -> None:
        self.exchange.error_type = "client_disconnected"

    def accounting_failed(self) -> None:
        """The reply went (or goes) out but the gateway could not account for it: an `error` outcome
        with unknown usage, so settlement keeps the whole reservation."""
        log.exception("accounting of a served reply failed")
        exchange = self.exchange
        exchange.status = 200
        exchange.outcome = "error"
        exchange.error_type = "accounting_error"
        exchange.usage = None
        exchange.cost_usd = None
        self.bound = None

    def failed(self, exc: BaseException) -> GatewayError:
        """The error to answer with; refusals by policy or quota are `denied`, the rest `error`."""
        error = exc if isinstance(exc, GatewayError) else ApiError("internal error")
        if not isinstance(exc, GatewayError):
            log.error("request failed", exc_info=exc)
        exchange = self.exchange
        exchange.status = error.status
        exchange.error_type = error.error_type
        exchange.outcome = "denied" if error.policy_refusal else "error"
        limits = self.quota.headers(self.reservation) if self.reservation is not None else None
        error.headers = {**(limits or self.principal_headers()), **error.headers}
        return error

    def cancelled(self) -> None:
        """Cancelled (client gone, shutdown) before the reply."""
        self.exchange.status = 499
        self.exchange.outcome = "error"
        self.exchange.error_type = "cancelled"

    @property
    def records(self) -> bool:
        """Whether finishing writes an outcome record (or settles): there is someone to audit and either
        the model route or a refusal."""
        if self.exchange.identity is None:
            return self.reservation is not None
        return self.calls_model or self.exchange.outcome == "denied"

    def principal_headers(self) -> dict[str, str]:
        """Rate-limit headers for a response without a reservation; none before a principal is known."""
        principal = self.exchange.principal
        if principal is None:
            return {}
        try:
            return self.quota.headers_for(principal)
        except Exception:  # advisory headers must never turn an answer into a 500
            log.exception("rate-limit headers failed")
            return {}

    # -- the end ----------------------------------------------------------------------------------

    async def finish(self) -> None:
        """Settle and record, once, and wait for it (cancellation-proof, capped at `cap_seconds`)."""
        if self.finished:
            return
        self.finished = True
        if not self.records:
            return
        task = self.background.spawn(self._finish())
        with anyio.CancelScope(shield=True):
            done, _ = await asyncio.wait({task}, timeout=self.cap_seconds)
        if not done:
            log.warning(
                "settlement and outcome record still running after %.1f s; the response ends without them",
                self.cap_seconds,
            )
            if self.metrics is not None:
                try:
                    self.metrics.count("FinishOverrun")
                except Exception:
                    log.exception("metric failed")

    async def _finish(self) -> None:
        if self.before_finish is not None:
            prepare, self.before_finish = self.before_finish, None
            try:
                await prepare()
            except Exception:  # a model was called: settlement and the outcome record still follow
                self.accounting_failed()
        self.exchange.finished_at = time.time()
        try:
            log_exchange(self.exchange)
        except Exception:  # a log line must never cost the settlement or the record
            log.exception("request log line failed")
        # Concurrently: the retries of one never hold up the other.
        await asyncio.gather(self._settle(), self._record_outcome())

    async def _settle(self) -> None:
        reservation = self.reservation
        if reservation is None:
            return
        try:
            if self.exchange.identity is None:  # nothing to account for: give it back
                await self.quota.release(reservation)
                return
            decided = settlement(self.exchange, self.bound, self._ceiling)
            if decided.action == "settle":
                assert decided.charge is not None
                await self.quota.settle(reservation, *decided.charge)
            elif decided.action == "release":
                await self.quota.release(reservation)
            elif self.exchange.served_by is not None:
                log.warning("served without final usage; the quota reservation stands as charged")
        except Exception:
            log.exception("quota settlement failed")

    def _ceiling(self, input_floor: int) -> Charge:
        exchange = self.exchange
        assert exchange.request is not None and exchange.decision is not None
        return pricing.ceiling(self.catalog, exchange.decision, exchange.request, input_floor)

    async def _record_outcome(self) -> None:
        if self.exchange.identity is None:
            return
        try:
            await self.audit.record_outcome(self.exchange)
        except Exception:  # the port says it never raises; make sure of it
            log.exception("audit outcome record failed")

    async def release_now(self, reservation: Reservation) -> None:
        """Give back a reservation that never reached the chain (the request record failed, or the
        request was cancelled while reserving)."""
        try:
            await self.quota.release(reservation)
        except Exception:
            log.exception("quota release failed")


def log_exchange(exchange: Exchange) -> None:
    served = exchange.served_by
    observability.info(
        "request finished",
        outcome=exchange.outcome,
        status=exchange.status,
        error_type=exchange.error_type,
        tenant_id=exchange.principal.tenant_id if exchange.principal else None,
        model=exchange.request.model if exchange.request else None,
        served_by=f"{served.provider}/{served.region}" if served else None,
        attempts=len(exchange.attempts),
        latency_ms=round(((exchange.finished_at or time.time()) - exchange.started_at) * 1000, 1),
        first_byte_ms=round((exchange.first_byte_at - exchange.started_at) * 1000, 1)
        if exchange.first_byte_at
        else None,
        input_tokens=exchange.usage.input_tokens if exchange.usage else None,
        output_tokens=exchange.usage.output_tokens if exchange.usage else None,
    )


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
