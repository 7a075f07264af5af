"""The demo's tenants and people: those `local up` seeds, plus dave, whose own quota step 3 uses up.

Seeding is idempotent, so a second demo run against the same stack reuses them.
"""

from __future__ import annotations

import secrets
from typing import Any

from gatewayctl import admin
from gatewayctl.demo.model import Person
from gatewayctl.local.seeding import DEMO_TENANTS, DEMO_USERS
from gatewayctl.output import CommandError
from gatewayctl.target import Target

QUOTA_REQUESTS_PER_MINUTE = 2

TENANTS = DEMO_TENANTS
PEOPLE: tuple[dict[str, Any], ...] = (
    *({**u, "key": u["username"].split("@")[0], "roles": list(u["roles"])} for u in DEMO_USERS),
    {
        "key": "dave",
        "username": "dave@globex.example",
        "tenant_id": "globex",
        "roles": ["basic_user"],
        "limits": {"requests_per_minute": QUOTA_REQUESTS_PER_MINUTE},
    },
)


def residency_of(tenant_id: str) -> str:
    return next(t["residency"] for t in TENANTS if t["tenant_id"] == tenant_id)


def seed(target: Target) -> dict[str, Person]:
    """The tenants and people (created when missing), each person with a fresh access token."""
    known = {t["tenant_id"] for t in admin.list_tenants(target)}
    for tenant in TENANTS:
        if tenant["tenant_id"] not in known:
            admin.create_tenant(target, tenant["tenant_id"], name=tenant["name"], residency=tenant["residency"])
    passwords = {u["username"]: u["password"] for u in (target.local.get("demo") or {}).get("users", [])}
    people = {}
    for spec in PEOPLE:
        person = ensure_person(target, spec, passwords.get(spec["username"]))
        person.token = access_token(target, person)
        people[person.key] = person
    return people


def ensure_person(target: Target, spec: dict[str, Any], password: str | None) -> Person:
    """The Cognito user and its principal as `spec` describes them, made or corrected as needed."""
    idp = target.client("cognito-idp")
    pool_id = target.output("UserPoolId")
    try:
        attributes = idp.admin_get_user(UserPoolId=pool_id, Username=spec["username"])["UserAttributes"]
    except idp.exceptions.UserNotFoundException:
        created = idp.admin_create_user(
            UserPoolId=pool_id,
            Username=spec["username"],
            UserAttributes=[{"Name": "email", "Value": spec["username"]}],
            MessageAction="SUPPRESS",
        )
        attributes = created["User"]["Attributes"]
        password = None
    sub = next(a["Value"] for a in attributes if a["Name"] == "sub")
    if password is None:  # a person the stack did not list: give them a password we know
        password = "Demo-" + secrets.token_urlsafe(9)
        idp.admin_set_user_password(UserPoolId=pool_id, Username=spec["username"], Password=password, Permanent=True)
    roles, limits = sorted(spec["roles"]), spec.get("limits")
    try:
        current = admin.get_principal(target, sub)
    except CommandError:
        current = None
    if current is not None and (current["tenant_id"] != spec["tenant_id"] or (current["limits"] or None) != limits):
        admin.remove_principal(target, sub)  # only a demo-made principal can differ like this
        current = None
    if current is None:
        admin.add_principal(
            target,
            spec["tenant_id"],
            sub,
            roles,
            kind="user",
            consent=True,
            limits=limits,
            display_name=spec["username"],
        )
    elif sorted(current["roles"]) != roles:
        admin.set_roles(target, sub, roles)
    return Person(spec["key"], spec["username"], password, sub, spec["tenant_id"], roles, limits)


def access_token(target: Target, person: Person) -> str:
    result = target.client("cognito-idp").initiate_auth(
        ClientId=target.local["cognito"]["people_client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": person.username, "PASSWORD": person.password},
    )
    return result["AuthenticationResult"]["AccessToken"]
