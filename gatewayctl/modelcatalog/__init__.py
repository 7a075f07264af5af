"""The models an environment serves, as gatewayctl sees them: `gatewayctl models` (listing.py: what a caller,
or a tenant's role, may use) and `gatewayctl models check` (check.py: whether the account's Bedrock and
Vertex can serve every route of the catalog).

The catalog is the environment's, read the way the function reads it: the base catalog with the
CATALOG_OVERRIDES of the deployed function's environment (the local stack's, from its state).
"""

from __future__ import annotations

from typing import Any

from gatewayctl import health
from gatewayctl.output import CommandError


def environment(target: Any) -> tuple[Any, Any]:
    """(the gateway's Settings, its catalog) for the target."""
    from gateway.domain.catalog import load_catalog

    settings = health.gateway_settings(target)
    try:
        return settings, load_catalog(None, settings.catalog_overrides)
    except ValueError as exc:  # synthesis refuses such overrides; a hand-edited environment can still hold them
        raise CommandError(f"the gateway's CATALOG_OVERRIDES are invalid: {exc}") from None
