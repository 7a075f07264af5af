"""What the gateway knows about one request as it moves along: plain values, no behaviour.

`Exchange` is filled in step by step and turned into audit records by the audit sink; it never holds
prompt or completion text.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.models.catalog import CatalogEntry
from gateway.models.tenancy import PrincipalRecord, TenantConfig


@dataclass(frozen=True)
class CallerIdentity:
    """Who the authorizer says is calling: users by `sub`, machine clients by `client_id`."""

    principal_id: str
    kind: Literal["user", "client"]
    client_id: str
    scopes: frozenset[str]
    claims: dict[str, str]


@dataclass(frozen=True)
class RequestMeta:
    """Facts about the HTTP request that the audit trail keeps."""

    request_id: str
    source_ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class Principal:
    id: str
    tenant_id: str
    roles: tuple[str, ...]
    pseudonym: str
    # What resolving loaded, so that policy and quota read it once per request rather than look it up again.
    record: PrincipalRecord | None = field(default=None, compare=False, repr=False)
    tenant: TenantConfig | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MessagesRequest:
    """The fields of a Messages API body that policy and quota read; `body` is forwarded otherwise as is."""

    model: str
    max_tokens: int
    stream: bool
    uses_tools: bool
    has_images: bool
    estimated_input_tokens: int
    body: dict[str, Any]
    body_sha256: str
    beta: tuple[str, ...] = ()
    # Top-level fields beyond model, max_tokens, messages, system and stream; content block types with
    # where each was first seen (messages.3.content.0): what policy's carrier table judges.
    fields: tuple[str, ...] = ()
    blocks: tuple[tuple[str, str], ...] = ()
    # Input tokens at most (before the per-model image bound and context cap); None: use the estimate.
    input_bound: int | None = None
    images: int = 0
    unbounded_documents: int = 0  # documents whose tokens only the model's context window bounds
    cache_ttl: str | None = None  # "5m" or "1h": the dearest cache write the request asks for


@dataclass(frozen=True)
class PolicyDecision:
    entry: CatalogEntry
    residency: str
    # The body to forward: the request's, with the tenant's notice appended and max_tokens clamped.
    body: dict[str, Any]
    max_tokens: int | None = None  # after clamping; None: the request's
    clamped: tuple[str, ...] = ()  # what was clamped, e.g. "max_tokens=32000->4096"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Attempt:
    provider: Literal["bedrock", "vertex", "anthropic"]
    region: str
    model_id: str
    error: str | None = None  # None for the attempt that served the request
    status: int | None = None
    # The request reached the upstream and the try ended without an answer (a timeout, a stream that
    # failed after it was accepted): the upstream may still have run it and billed it.
    possibly_billed: bool = False


@dataclass
class Exchange:
    """Everything the gateway learns about one request, filled in as the request moves along.

    The audit sink turns it into audit records; it never holds prompt or completion text.
    """

    meta: RequestMeta
    identity: CallerIdentity | None = None
    principal: Principal | None = None
    request: MessagesRequest | None = None
    decision: PolicyDecision | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.time)
    attempts: list[Attempt] = field(default_factory=list)
    served_by: Attempt | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    response_sha256: str | None = None
    first_byte_at: float | None = None
    finished_at: float | None = None
    status: int | None = None
    error_type: str | None = None
    # anthropic-beta flags the serving (or last tried) upstream does not accept: dropped, and reported.
    dropped_betas: tuple[str, ...] = ()
    quota_decision: str | None = None  # "granted", "refused:<window>", ...
    # Which outcome record the audit sink writes: "response" (served), "denied" (refused by policy
    # or quota after the authorizer let it in), "error" (bad input, upstream or gateway failure).
    outcome: Literal["response", "denied", "error"] | None = None
