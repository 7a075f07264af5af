"""People and tenants in a local stack: Cognito users, registered as principals through the admin
library, and the demo tenants and people that `local up` seeds (stack.json lists their passwords)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gatewayctl import admin
from gatewayctl.target import Target

DEMO_TENANTS = (
    {"tenant_id": "acme", "name": "Acme Corp", "residency": "us"},
    {"tenant_id": "globex", "name": "Globex GmbH", "residency": "eu"},
)
DEMO_USERS = (
    {"username": "alice@acme.example", "tenant_id": "acme", "roles": ("basic_user",)},
    {"username": "bob@acme.example", "tenant_id": "acme", "roles": ("power_user",)},
    {"username": "carol@globex.example", "tenant_id": "globex", "roles": ("basic_user",)},
)


@dataclass
class User:
    username: str
    password: str
    sub: str
    tenant_id: str | None = None
    roles: tuple[str, ...] = ()
    token: str = ""  # an access token, when the caller asked for one


def create_user(idp: Any, pool_id: str, username: str, password: str | None = None) -> User:
    """A confirmed Cognito user (admin_create_user + a permanent password)."""
    password = password or "Pw-" + secrets.token_urlsafe(12)
    attributes = [{"Name": "email", "Value": username}] if "@" in username else []
    created = idp.admin_create_user(
        UserPoolId=pool_id, Username=username, UserAttributes=attributes, MessageAction="SUPPRESS"
    )
    idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    sub = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
    return User(username=username, password=password, sub=sub)


def add_user(
    target: Target,
    tenant_id: str,
    username: str,
    roles: Iterable[str] = ("basic_user",),
    *,
    password: str | None = None,
    consent: bool = False,
) -> User:
    """A Cognito user registered as a principal (by sub) of an existing tenant."""
    user = create_user(target.client("cognito-idp"), target.output("UserPoolId"), username, password)
    admin.add_principal(target, tenant_id, user.sub, list(roles), kind="user", consent=consent, display_name=username)
    user.tenant_id, user.roles = tenant_id, tuple(roles)
    return user


def seed_demo(target: Target) -> dict[str, Any]:
    """The demo tenants and people (each person with a fresh password), as stack.json lists them."""
    demo: dict[str, Any] = {"tenants": [], "users": []}
    for tenant in DEMO_TENANTS:
        admin.create_tenant(target, tenant["tenant_id"], name=tenant["name"], residency=tenant["residency"])
        demo["tenants"].append(dict(tenant))
    for spec in DEMO_USERS:
        user = add_user(
            target,
            spec["tenant_id"],
            spec["username"],
            spec["roles"],
            password="Demo-" + secrets.token_urlsafe(9),
            consent=True,
        )
        demo["users"].append(
            {
                "username": user.username,
                "password": user.password,
                "sub": user.sub,
                "tenant_id": user.tenant_id,
                "roles": list(user.roles),
            }
        )
    return demo
