"""Site settings the tests supply for staging and prod: placeholders in reserved ranges (AWS's documented
example account, .example domains), never anything that could name a real deployment."""

from __future__ import annotations

from typing import Any

TEST_SITES: dict[str, dict[str, Any]] = {
    "staging": {
        "account": "111122223333",
        "region": "eu-west-1",
        "cognito_domain_prefix": "test-gateway-staging",
        "alarm_email": "alarms@staging.test.example",
        "identity_provider": {
            "kind": "oidc",
            "name": "TestOidc",
            "issuer_url": "https://idp.test.example",
            "client_id": "test-client",
            "client_secret_name": "test/oidc-client-secret",
        },
        "vertex": {
            "project": "test-vertex-staging",
            "project_number": "100000000001",
            "pool": "test-pool",
            "provider": "aws1",
        },
        "callback_urls": ["https://portal.staging.test.example/callback"],
    },
    "prod": {
        "account": "444455556666",
        "region": "us-east-1",
        "cognito_domain_prefix": "test-gateway-prod",
        "alarm_email": "alarms@prod.test.example",
        "identity_provider": {"kind": "saml", "name": "TestSaml", "metadata_url": "https://idp.test.example/saml.xml"},
        "vertex": {
            "project": "test-vertex-prod",
            "project_number": "100000000002",
            "pool": "test-pool",
            "provider": "aws1",
        },
        "audit_mirror_cloud_logging": True,
    },
}


def site_for(env: str) -> dict[str, Any]:
    return TEST_SITES.get(env, {})
