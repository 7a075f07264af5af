"""What the demo's steps share: the models they call, what a step found, and the calls it made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HAIKU = "claude-haiku-4-5"
OPUS = "claude-opus-4-5"


@dataclass
class Person:
    key: str
    username: str
    password: str
    sub: str
    tenant_id: str
    roles: list[str]
    limits: dict[str, Any] | None = None
    token: str = ""


@dataclass
class StepResult:
    number: int
    title: str
    ok: bool = True
    checks: list[tuple[bool, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Call:
    """One request the demo made: what it expects the audit trail to hold for it."""

    request_id: str
    label: str
    tenant: str
    outcome: str  # the outcome record's event type: response or denied
    status: int
