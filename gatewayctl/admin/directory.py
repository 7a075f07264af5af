"""Cognito, as operators know people: by user name or e-mail, while the tables know them by `sub`.

`resolve` turns what an operator typed (a principal id, a user name or an e-mail) into a principal
id; `people` adds user names and e-mails to principals for display.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.models import tenant_items

from gatewayctl.admin.dynamo import Tables
from gatewayctl.admin.validation import check_principal_id
from gatewayctl.output import CommandError
from gatewayctl.target import Target


@dataclass(frozen=True)
class CognitoUser:
    sub: str
    username: str
    email: str | None


def resolve(target: Target, name: str) -> str:
    """The principal id that `name` stands for.

    A registered principal id is itself. Otherwise Cognito is asked for a user with that user name
    or e-mail, and its `sub` is the answer. A name with an "@" that Cognito does not know is an
    error; any other name is returned as it is (an id with no principal: callers decide).
    """
    # Before any call: the name goes into a ListUsers filter string, so no quote may reach it.
    check_principal_id(name)
    tables = Tables(target)
    if tables.get(tables.tenants, tenant_items.principal_key(name)) is not None:
        return name
    user = find_user(target, name)
    if user is not None:
        return user.sub
    if "@" in name:
        raise CommandError(f"no principal and no Cognito user named {name!r}")
    return name


def find_user(target: Target, name: str) -> CognitoUser | None:
    """The pool's user whose user name or e-mail is `name`, if there is one."""
    check_principal_id(name)
    cognito, pool_id = target.client("cognito-idp"), target.output("UserPoolId")
    try:
        got = cognito.admin_get_user(UserPoolId=pool_id, Username=name)
        return _user(got["Username"], got.get("UserAttributes", []))
    except cognito.exceptions.UserNotFoundException:
        pass
    except Exception as exc:
        raise CommandError(f"cannot look {name!r} up in Cognito: {exc}") from None
    found = _list_users(cognito, pool_id, f'email = "{name}"')
    return found[0] if found else None


def people(target: Target, principals: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each principal with `username` and `email` from Cognito (users only; None when not found)."""
    cognito, pool_id = target.client("cognito-idp"), target.output("UserPoolId")
    out = []
    for principal in principals:
        user = None
        if principal.get("kind", "user") == "user":
            check_principal_id(principal["principal_id"])
            found = _list_users(cognito, pool_id, f'sub = "{principal["principal_id"]}"')
            user = found[0] if found else None
        out.append({**principal, "username": user.username if user else None, "email": user.email if user else None})
    return out


def _list_users(cognito: Any, pool_id: str, filter_: str) -> list[CognitoUser]:
    try:
        pages = cognito.get_paginator("list_users").paginate(UserPoolId=pool_id, Filter=filter_)
        return [_user(u["Username"], u.get("Attributes", [])) for page in pages for u in page.get("Users", [])]
    except Exception as exc:
        raise CommandError(f"cannot list Cognito users ({filter_}): {exc}") from None


def _user(username: str, attributes: list[dict[str, str]]) -> CognitoUser:
    values = {a["Name"]: a["Value"] for a in attributes}
    return CognitoUser(sub=values.get("sub", ""), username=username, email=values.get("email"))
