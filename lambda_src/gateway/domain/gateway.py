"""The request path's steps, over the ports: who is calling, what they may do, reserve and record,
call the failover chain, answer. Nothing here knows HTTP or boto; every request's end belongs to
its RequestEnd (request_end.py).

    resolve -> parse -> catalog -> authorize -> gather(quota.reserve, audit.record_request)
      -> failover chain -> whole reply, or a Relay of the stream -> RequestEnd.finish
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

import anyio

from gateway.domain.background import Background
from gateway.domain.catalog import Catalog
from gateway.domain.errors import (
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from gateway.domain.failover import FailoverChain
from gateway.domain.policy import require
from gateway.domain.ports import AuditSink, Metrics, Quota, Reservation, Tenancy
from gateway.domain.pseudonym import pseudonymize
from gateway.domain.relay import Relay
from gateway.domain.request import parse_messages_request
from gateway.domain.request_end import RequestEnd
from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import Exchange, MessagesRequest, PolicyDecision, Principal, RequestMeta
from gateway.observability import log


@dataclass
class Reply:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # a whole JSON response
    stream: AsyncIterator[bytes] | None = None  # SSE frames


class Gateway:
    def __init__(
        self,
        *,
        catalog: Catalog,
        tenancy: Tenancy,
        quota: Quota,
        audit: AuditSink,
        chain: FailoverChain,
        background: Background,
        max_body_bytes: int,
        stream_idle_timeout_seconds: float = 120.0,
        finish_cap_seconds: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.tenancy = tenancy
        self.quota = quota
        self.audit = audit
        self.chain = chain
        self.background = background
        self.max_body_bytes = max_body_bytes
        self.stream_idle_timeout_seconds = stream_idle_timeout_seconds
        self.finish_cap_seconds = finish_cap_seconds
        self.metrics = metrics

    def begin(self, meta: RequestMeta, *, calls_model: bool) -> RequestEnd:
        return RequestEnd(
            Exchange(meta=meta),
            catalog=self.catalog,
            quota=self.quota,
            audit=self.audit,
            background=self.background,
            metrics=self.metrics,
            cap_seconds=self.finish_cap_seconds,
            calls_model=calls_model,
        )

    # -- POST /v1/messages ------------------------------------------------------------------------

    async def resolve(self, end: RequestEnd) -> Principal:
        """Who is calling, before the body is judged: a bad body from a known caller is audited as theirs."""
        exchange = end.exchange
        assert exchange.identity is not None, "the route sets the identity before the steps run"
        try:
            principal = exchange.principal = await self.tenancy.resolve(exchange.identity)
        except BaseException:
            exchange.meta = client_details(exchange.meta, None)
            raise
        exchange.meta = client_details(exchange.meta, principal)
        return principal

    async def messages(self, end: RequestEnd, raw: bytes, beta: tuple[str, ...]) -> Reply:
        exchange = end.exchange
        try:
            request = parse_messages_request(raw, max_body_bytes=self.max_body_bytes, beta=beta)
            exchange.request = request
            principal, decision = await self._authorize(exchange, request, self._entry(request))
            end.reservation = await self._reserve_and_audit(end, principal, decision, request)
            route = (exchange, decision.entry, decision.residency, forwardable(decision.body), request.beta)
            if request.stream:
                opened = await self.chain.open_stream(*route)
                relay = Relay(end, opened, idle_timeout_seconds=self.stream_idle_timeout_seconds)
                return Reply(self._headers(end, decision.entry), stream=relay.frames())
            upstream, body = await self.chain.invoke(*route)
        except BaseException as exc:
            if isinstance(exc, Exception):
                raise
            # Cancelled (client gone, shutdown): still one outcome, and no lost reservation.
            end.cancelled()
            with anyio.CancelScope(shield=True):
                await end.finish()
            raise
        end.served_whole(body, upstream.provider)
        return Reply(self._headers(end, exchange.decision.entry), body=body)

    def _headers(self, end: RequestEnd, entry: CatalogEntry) -> dict[str, str]:
        headers = {**self.quota.headers(end.reservation), **lifecycle_headers(entry)}
        exchange = end.exchange
        if exchange.dropped_betas:
            headers["x-gateway-dropped-betas"] = ",".join(exchange.dropped_betas)
        if exchange.decision is not None and exchange.decision.clamped:
            headers["x-gateway-clamped"] = "; ".join(exchange.decision.clamped)
        return headers

    # -- POST /v1/messages/count_tokens -----------------------------------------------------------

    async def count_tokens(self, end: RequestEnd, raw: bytes) -> Reply:
        """An estimate from the body. No model is called, so nothing is metered; refusals are audited."""
        request = parse_messages_request(raw, max_body_bytes=self.max_body_bytes, require_max_tokens=False)
        end.exchange.request = request
        await self._authorize(end.exchange, request, self._entry(request))
        body = json.dumps({"input_tokens": request.estimated_input_tokens}).encode()
        return Reply(end.principal_headers(), body=body)

    # -- GET /v1/models, GET /v1/usage ------------------------------------------------------------

    async def models(self, end: RequestEnd) -> tuple[list[CatalogEntry], dict[str, str]]:
        principal = await self._reader(end, "listing models")
        return await self.tenancy.allowed_models(principal), end.principal_headers()

    async def usage(self, end: RequestEnd) -> tuple[dict[str, Any], dict[str, str]]:
        # The tenant comes from the authenticated principal alone: no header, query or body can name another.
        principal = await self._reader(end, "reading usage")
        return await self.quota.usage_report(principal), end.principal_headers()

    # -- steps ------------------------------------------------------------------------------------

    async def _reader(self, end: RequestEnd, what: str) -> Principal:
        principal = _principal(end.exchange)
        require(await self.tenancy.permissions(principal), "read", what)
        return principal

    def _entry(self, request: MessagesRequest) -> CatalogEntry:
        entry = self.catalog.lookup(request.model)
        if entry is None:
            raise NotFoundError(f"model: {request.model}")
        lifecycle = entry.lifecycle
        if lifecycle.status == "retired":
            when = f" on {lifecycle.end_of_life}" if lifecycle.end_of_life else ""
            raise NotFoundError(f"model: {request.model} was retired{when}; use {lifecycle.replacement} instead")
        cap = entry.max_output_tokens
        if cap is not None and request.max_tokens > cap:
            raise InvalidRequestError(
                f"max_tokens: {request.max_tokens} > {cap}, which is the maximum allowed number of "
                f"output tokens for {entry.alias}"
            )
        return entry

    async def _authorize(
        self, exchange: Exchange, request: MessagesRequest, entry: CatalogEntry
    ) -> tuple[Principal, PolicyDecision]:
        principal = _principal(exchange)
        decision = exchange.decision = await self.tenancy.authorize(principal, request, entry)
        return principal, decision

    async def _reserve_and_audit(
        self, end: RequestEnd, principal: Principal, decision: PolicyDecision, request: MessagesRequest
    ) -> Reservation:
        # One DynamoDB transaction and one Kinesis put, concurrently: the only work before the model.
        # Shielded: cancelled meanwhile, the reservation may still commit; wait for it and release it,
        # so no committed reservation is left without an owner.
        exchange = end.exchange
        both = asyncio.ensure_future(
            asyncio.gather(
                self.quota.reserve(principal, decision, request),
                self.audit.record_request(exchange),
                return_exceptions=True,
            )
        )
        try:
            reserved, audited = await asyncio.shield(both)
        except BaseException:
            with anyio.CancelScope(shield=True):
                reserved, _ = await both
                if not isinstance(reserved, BaseException):
                    await end.release_now(reserved)
            raise
        if isinstance(reserved, BaseException):
            refused = isinstance(reserved, RateLimitError) and reserved.policy_refusal
            exchange.quota_decision = "refused" if refused else "error"
            raise reserved
        exchange.quota_decision = "granted"
        if isinstance(audited, BaseException):
            await end.release_now(reserved)
            log.error("audit request record failed; refusing the request", exc_info=audited)
            raise ServiceUnavailableError("the audit trail is unavailable; the request was not sent to a model")
        return reserved



def client_details(meta: RequestMeta, principal: Principal | None) -> RequestMeta:
    """The source IP and user agent as the audit trail may keep them: no direct identifier of a person
    (docs/audit.md, Personal data). A caller that does not resolve has no key: both are dropped."""
    record, tenant = (principal.record, principal.tenant) if principal is not None else (None, None)
    if record is None or not record.pseudonym_secret or tenant is None or tenant.client_details == "drop":
        return replace(meta, source_ip="", user_agent="")
    secret = record.pseudonym_secret
    return replace(
        meta,
        source_ip=pseudonymize(secret, "source_ip", meta.source_ip) if meta.source_ip else "",
        user_agent=pseudonymize(secret, "user_agent", meta.user_agent) if meta.user_agent else "",
    )


# Body fields each upstream sets for itself (its API version; the beta flags it accepts, taken from the
# request's own flags): never forwarded as the caller sent them.
TRANSPORT_FIELDS = ("anthropic_version", "anthropic_beta")


def forwardable(body: dict[str, Any]) -> dict[str, Any]:
    if not any(name in body for name in TRANSPORT_FIELDS):
        return body
    return {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS}


def _principal(exchange: Exchange) -> Principal:
    assert exchange.principal is not None, "routes.serve resolves the caller before the steps run"
    return exchange.principal


def lifecycle_headers(entry: CatalogEntry) -> dict[str, str]:
    """A deprecated model's answers say so: `deprecation` (RFC 9745's header; `true` as its drafts had it,
    the deprecation date being unknown) and `sunset` (RFC 8594), the end-of-life date, plus the replacement."""
    lifecycle = entry.lifecycle
    if lifecycle.status != "deprecated" or lifecycle.end_of_life is None:
        return {}
    end = date.fromisoformat(lifecycle.end_of_life)
    sunset = format_datetime(datetime(end.year, end.month, end.day, tzinfo=UTC), usegmt=True)
    headers = {"deprecation": "true", "sunset": sunset}
    if lifecycle.replacement:
        headers["x-gateway-model-replacement"] = lifecycle.replacement
    return headers
