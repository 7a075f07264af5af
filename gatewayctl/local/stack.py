"""The local stack, composed in one process: what `gatewayctl local up` runs and what the tests use.

One process, threads for the servers: moto's ThreadedMotoServer, the Bedrock emulator (one port
per region plus a control port, one uvicorn server), the Vertex emulator, and the gateway app
under uvicorn behind the local Cognito authorizer. In-process threads rather than a process per
part because the test harness starts a stack per xdist worker and process start-up (imports of
boto3, moto, the app) would dominate its time; `local up` runs this same composition in one
child process (gatewayctl/local/serve.py) so `local down` stops everything with one signal to one
process group. Only the audit pump is a separate process (it is the audit engineer's program).

The process environment is part of the stack: AWS_ENDPOINT_URL points botocore (the app's
adapters, the tenancy library, the pump) at the moto server, with fake credentials, and
AWS_REGION/AWS_DEFAULT_REGION let google.auth.aws sign without the EC2 metadata server. `start()`
sets them in os.environ; this is why a stack owns its process.

Resources come from stacks/definitions.py, the plain data the CDK stacks use too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayctl.local.access_log import AccessLogMiddleware
from gatewayctl.local.authorizer import (
    PEOPLE_LOCAL_SCOPE,
    CognitoAuthorizer,
    JwksCache,
    issuer_for,
    jwks_url_for,
)
from gatewayctl.local.bedrock_emulator import BedrockEmulator
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from gatewayctl.local.vertex_emulator import VertexEmulator, vertex_wif_config
from gatewayctl.output import CommandError
from gatewayctl.target import OUTPUT_KEYS, Target
from stacks import definitions

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_BEDROCK_REGIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-west-2"),
    "eu": ("eu-west-1", "eu-central-1"),
}
DEFAULT_VERTEX_REGIONS = {"us": "us-east5", "eu": "europe-west1"}

# The demo tenants and people that `local up` seeds (stack.json lists them with their passwords).
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
class StackPorts:
    """0 = ephemeral (tests); `local up` passes fixed ports. Bedrock region i listens on bedrock_base + i."""

    gateway: int = 0
    moto: int = 0
    bedrock_control: int = 0
    bedrock_base: int = 0
    vertex: int = 0


@dataclass
class StackOptions:
    env: str = "local"
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    ports: StackPorts = field(default_factory=StackPorts)
    bedrock_regions: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_BEDROCK_REGIONS)
    )
    vertex_project: str | None = "claude-gateway-local"
    vertex_regions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VERTEX_REGIONS))
    # extra Settings fields for the app (e.g. {"breaker_open_seconds": 1.0})
    settings_overrides: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "warning"


@dataclass
class User:
    username: str
    password: str
    sub: str
    tenant_id: str | None = None
    roles: tuple[str, ...] = ()
    token: str = ""  # an access token, when the caller asked for one


class LocalStack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.moto_server: Any = None
        self.moto_endpoint = ""
        self.outputs: dict[str, str] = {}
        self.cognito: dict[str, str] = {}
        self.bedrock = BedrockEmulator()
        self.vertex = VertexEmulator()
        self.bedrock_endpoints: dict[str, str] = {}
        self.bedrock_control_url = ""
        self.vertex_endpoint = ""
        self.endpoint = ""  # the gateway, for anthropic.Anthropic(base_url=...)
        self.authorizer: CognitoAuthorizer | None = None
        self.access_log: AccessLogMiddleware | None = None  # what the gateway port serves
        self.app: Any = None  # the gateway app (inside the authorizer)
        self._servers: list[ThreadedServer] = []
        self._pump: subprocess.Popen | None = None
        self._ports: dict[str, Any] = {}
        self.demo: dict[str, Any] = {"tenants": [], "users": []}

    # -- start and stop ----------------------------------------------------------------------

    def start(self, *, app_factory: Callable[[Any], Any] | None = None, gateway: bool = True) -> LocalStack:
        """Everything but the pump. `gateway=False` starts only the backing services and emulators."""
        try:
            self.start_moto()
            self.create_resources()
            self.start_emulators()
            if gateway:
                self.start_gateway(app_factory)
        except BaseException:
            self.stop()
            raise
        return self

    def start_moto(self) -> str:
        import logging

        from moto.server import ThreadedMotoServer

        from gatewayctl.local import moto_patches

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
        moto_patches.serialize_dynamodb()  # concurrent quota reservations must not lose updates

        host, port = self.options.host, self.options.ports.moto
        if port:
            bind(port, host, what="moto server").close()  # a clear error if taken
        self.moto_server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.moto_server.start()
        _, bound = self.moto_server.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{bound}"
        self._ports["moto"] = bound
        os.environ.update(self.aws_env())
        return self.moto_endpoint

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            **FAKE_CREDENTIALS,
            "AWS_REGION": self.options.region,
            "AWS_DEFAULT_REGION": self.options.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start_emulators(self) -> None:
        host, ports = self.options.host, self.options.ports
        regions = sorted({r for rs in self.options.bedrock_regions.values() for r in rs})
        control = bind(ports.bedrock_control, host, what="Bedrock emulator control")
        region_sockets = [
            bind(ports.bedrock_base + i if ports.bedrock_base else 0, host, what=f"Bedrock emulator {region}")
            for i, region in enumerate(regions)
        ]
        self.bedrock.regions_by_port.update(
            {port_of(s): r for s, r in zip(region_sockets, regions, strict=True)}
        )
        self._servers.append(
            ThreadedServer(
                self.bedrock.app,
                [control, *region_sockets],
                name="bedrock-emulator",
                log_level=self.options.log_level,
            ).start()
        )
        self.bedrock_control_url = f"http://{host}:{port_of(control)}"
        self.bedrock_endpoints = {
            r: f"http://{host}:{port_of(s)}" for s, r in zip(region_sockets, regions, strict=True)
        }
        self._ports["bedrock_control"] = port_of(control)
        self._ports["bedrock"] = {r: port_of(s) for s, r in zip(region_sockets, regions, strict=True)}
        if self.options.vertex_project:
            vsock = bind(ports.vertex, host, what="Vertex emulator")
            self._servers.append(
                ThreadedServer(
                    self.vertex.app, [vsock], name="vertex-emulator", log_level=self.options.log_level
                ).start()
            )
            self.vertex_endpoint = f"http://{host}:{port_of(vsock)}"
            self._ports["vertex"] = port_of(vsock)

    def start_gateway(self, app_factory: Callable[[Any], Any] | None = None) -> str:
        if app_factory is None:
            from gateway.app import create_app

            app_factory = create_app
        app = app_factory(self.settings())
        self.app = app
        pool_id = self.cognito["user_pool_id"]
        self.authorizer = CognitoAuthorizer(
            app,
            issuer=issuer_for(self.options.region, pool_id),
            jwks=JwksCache(jwks_url_for(self.moto_endpoint, pool_id)),
            client_ids=PoolClients(self.client("cognito-idp"), pool_id),
            accepted_scopes=(self.cognito["invoke_scope"], PEOPLE_LOCAL_SCOPE),
            stage=self.options.env,
        )
        # The stage around it all, as API Gateway's: one access-log line per request (authorizer
        # refusals too), the independent witness `gatewayctl audit verify` joins the audit trail with.
        self.access_log = AccessLogMiddleware(
            self.authorizer, self.client("s3"), self.outputs["AuditBucketName"]
        )
        sock = bind(self.options.ports.gateway, self.options.host, what="gateway")
        self._servers.append(
            ThreadedServer(self.access_log, [sock], name="gateway", log_level=self.options.log_level).start()
        )
        self.endpoint = f"http://{self.options.host}:{port_of(sock)}"
        self._ports["gateway"] = port_of(sock)
        self.outputs["ApiEndpoint"] = self.endpoint
        return self.endpoint

    def start_pump(self, log_dir: Path, *, interval: float = 2.0) -> subprocess.Popen | None:
        """The audit engineer's pump (`python -m gatewayctl.local.pump`), if it exists; None otherwise."""
        import importlib.util

        if importlib.util.find_spec("gatewayctl.local.pump") is None:
            return None
        log_dir.mkdir(parents=True, exist_ok=True)
        # Every stack has a new stream (a new moto): a previous stack's checkpoint would make the pump
        # skip this stream's first records (sequence numbers restart), so start from its beginning.
        checkpoint = log_dir / "pump-checkpoint.json"
        checkpoint.unlink(missing_ok=True)
        env = {
            **os.environ,
            **self.aws_env(),
            **self.settings().to_env(),
            "AUDIT_BUCKET": self.outputs["AuditBucketName"],
            "PUMP_INTERVAL": str(interval),
            "PUMP_REDRIVE_DLQ": "true",
            "PUMP_CHECKPOINT": str(checkpoint),
        }
        with open(log_dir / "pump.log", "ab") as log:
            self._pump = subprocess.Popen(
                [sys.executable, "-m", "gatewayctl.local.pump"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self._pump

    def stop(self) -> None:
        if self._pump is not None and self._pump.poll() is None:
            self._pump.terminate()
            try:
                self._pump.wait(5)
            except subprocess.TimeoutExpired:
                self._pump.kill()
                self._pump.wait(5)
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self.access_log is not None:  # after the gateway stopped, before moto: nothing unwritten
            self.access_log.writer.close()
            self.access_log = None
        if self.moto_server is not None:
            self.moto_server.stop()
            self.moto_server = None

    # -- resources ---------------------------------------------------------------------------

    def name(self, suffix: str) -> str:
        return f"claude-gateway-{self.options.env}-{suffix}"

    def client(self, service: str, region: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=region or self.options.region,
            endpoint_url=self.moto_endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_resources(self) -> dict[str, str]:
        """Tables, audit stream, DLQ, audit bucket and the user pool, from stacks/definitions.py."""
        ddb = self.client("dynamodb")
        tenants = _create_table(ddb, self.name("tenants"), definitions.TENANTS)
        usage = _create_table(ddb, self.name("usage"), definitions.USAGE)

        stream = self.name("audit")
        kinesis = self.client("kinesis")
        kinesis.create_stream(StreamName=stream, ShardCount=definitions.AUDIT_STREAM.shard_count)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
        )

        dlq_url = self.client("sqs").create_queue(
            QueueName=self.name("audit-dlq"),
            Attributes={"MessageRetentionPeriod": str(definitions.AUDIT_DLQ.retention_seconds)},
        )["QueueUrl"]

        bucket = self.name("audit")
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=definitions.AUDIT_BUCKET.object_lock)
        if definitions.AUDIT_BUCKET.versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        if definitions.AUDIT_BUCKET.object_lock:
            s3.put_object_lock_configuration(
                Bucket=bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
                },
            )
        self.cognito = self._create_user_pool()
        self.outputs = {
            "TenantsTableName": tenants,
            "UsageTableName": usage,
            "AuditStreamName": stream,
            "AuditDlqUrl": dlq_url,
            "AuditBucketName": bucket,
            # Locally the audit trail is queried with DuckDB; these name what Athena uses in the cloud.
            "GlueDatabaseName": self.name("audit").replace("-", "_"),
            "GlueTableName": "audit_events",
            "AthenaWorkgroupName": self.name("audit"),
            "UserPoolId": self.cognito["user_pool_id"],
            "UserPoolClientId": self.cognito["people_client_id"],
            "InvokeScope": self.cognito["invoke_scope"],
            "ApiEndpoint": self.endpoint,
            "GatewayFunctionName": self.name("gateway"),
        }
        assert set(self.outputs) == set(OUTPUT_KEYS), "outputs drifted from gatewayctl.target.OUTPUT_KEYS"
        return self.outputs

    def _create_user_pool(self) -> dict[str, str]:
        pool_def = definitions.USER_POOL
        idp = self.client("cognito-idp")
        pool_id = idp.create_user_pool(
            PoolName=self.name("users"),
            Policies={
                "PasswordPolicy": {
                    "MinimumLength": 8,
                    "RequireUppercase": False,
                    "RequireLowercase": False,
                    "RequireNumbers": False,
                    "RequireSymbols": False,
                }
            },
        )["UserPool"]["Id"]
        idp.create_resource_server(
            UserPoolId=pool_id,
            Identifier=pool_def.resource_server,
            Name="claude-gateway",
            Scopes=[{"ScopeName": s, "ScopeDescription": f"{s} the gateway"} for s in pool_def.scopes],
        )
        out = {
            "user_pool_id": pool_id,
            "invoke_scope": pool_def.invoke_scope,
            "issuer": issuer_for(self.options.region, pool_id),
            "jwks_url": jwks_url_for(self.moto_endpoint, pool_id),
        }
        for client_def in pool_def.clients:
            created = idp.create_user_pool_client(
                UserPoolId=pool_id,
                ClientName=client_def.logical_id,
                GenerateSecret=client_def.generate_secret,
                ExplicitAuthFlows=list(client_def.auth_flows),
                AllowedOAuthFlows=list(client_def.oauth_flows),
                AllowedOAuthScopes=list(client_def.oauth_scopes),
                AllowedOAuthFlowsUserPoolClient=True,
                SupportedIdentityProviders=["COGNITO"],
                CallbackURLs=["http://localhost:8765/callback"] if "code" in client_def.oauth_flows else [],
            )["UserPoolClient"]
            key = "people" if client_def is definitions.PEOPLE_CLIENT else "machine"
            out[f"{key}_client_id"] = created["ClientId"]
            if created.get("ClientSecret"):
                out[f"{key}_client_secret"] = created["ClientSecret"]
        return out

    # -- the app's settings ------------------------------------------------------------------

    def settings(self) -> Any:
        from gateway.settings import Settings

        wif = None
        if self.options.vertex_project and self.vertex_endpoint:
            wif = json.dumps(vertex_wif_config(self.vertex_endpoint, self.options.vertex_project))
        return Settings(
            env=self.options.env,
            region=self.options.region,
            tenants_table=self.outputs["TenantsTableName"],
            usage_table=self.outputs["UsageTableName"],
            audit_stream=self.outputs["AuditStreamName"],
            audit_dlq_url=self.outputs["AuditDlqUrl"],
            bedrock_regions={k: tuple(v) for k, v in self.options.bedrock_regions.items()},
            bedrock_endpoints=dict(self.bedrock_endpoints),
            vertex_project=self.options.vertex_project if self.vertex_endpoint else None,
            vertex_regions=dict(self.options.vertex_regions) if self.vertex_endpoint else {},
            vertex_endpoint=self.vertex_endpoint or None,
            vertex_wif_config=wif,
            **dict(self.options.settings_overrides),
        )

    # -- people, tokens, tenants -------------------------------------------------------------

    def target(self) -> Target:
        """The gatewayctl Target for this stack (what `--target local` loads from stack.json)."""
        return Target(
            kind="local",
            region=self.options.region,
            outputs=dict(self.outputs),
            endpoint_url=self.moto_endpoint,
            local=self.state(),
        )

    def create_user(self, username: str, password: str | None = None) -> User:
        """A confirmed Cognito user (admin_create_user + a permanent password); returns its sub."""
        password = password or "Pw-" + secrets.token_urlsafe(12)
        idp = self.client("cognito-idp")
        pool_id = self.cognito["user_pool_id"]
        created = idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
        sub = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
        return User(username=username, password=password, sub=sub)

    def access_token(self, username: str, password: str) -> str:
        """A real access token from the emulated pool (InitiateAuth USER_PASSWORD_AUTH, people client)."""
        result = self.client("cognito-idp").initiate_auth(
            ClientId=self.cognito["people_client_id"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        return result["AuthenticationResult"]["AccessToken"]

    def machine_token(
        self, client_id: str, client_secret: str, *, scope: str | None = None, expires_in: int = 3600
    ) -> str:
        """A client-credentials access token, as Cognito's /oauth2/token would mint it.

        LOCAL ONLY: moto has no /oauth2/token endpoint, so this checks the client and its secret
        against the pool and signs the token with moto's own (public, test-only) signing key, the
        key behind the pool's JWKS; the authorizer then validates it like any other token.
        """
        import jwt
        from moto.utilities.utils import load_resource

        described = self.client("cognito-idp").describe_user_pool_client(
            UserPoolId=self.cognito["user_pool_id"], ClientId=client_id
        )["UserPoolClient"]
        if described.get("ClientSecret") != client_secret:
            raise CommandError("invalid client secret")
        scope = scope or self.cognito["invoke_scope"]
        if scope not in described.get("AllowedOAuthScopes", []):
            raise CommandError(f"client {client_id} may not request scope {scope}")
        now = int(time.time())
        claims = {
            "sub": client_id,
            "token_use": "access",
            "scope": scope,
            "auth_time": now,
            "iss": self.cognito["issuer"],
            "exp": now + expires_in,
            "iat": now,
            "version": 2,
            "jti": str(uuid.uuid4()),
            "client_id": client_id,
        }
        key = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"))
        return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": "dummy"})

    def create_tenant(self, tenant_id: str, **kwargs: Any) -> dict[str, Any]:
        """Seeding goes through the tenancy engineer's library (gatewayctl/tenancy.py)."""
        from gatewayctl import tenancy

        return tenancy.create_tenant(self.target(), tenant_id, **kwargs)

    def add_user(
        self,
        tenant_id: str,
        username: str,
        roles: Iterable[str] = ("basic_user",),
        *,
        password: str | None = None,
        consent: bool = False,
    ) -> User:
        """A Cognito user registered as a principal (by sub) of an existing tenant."""
        from gatewayctl import tenancy

        user = self.create_user(username, password)
        tenancy.add_principal(
            self.target(),
            tenant_id,
            user.sub,
            list(roles),
            kind="user",
            consent=consent,
            display_name=username,
        )
        user.tenant_id, user.roles = tenant_id, tuple(roles)
        return user

    def seed_demo(self) -> dict[str, Any]:
        """The demo tenants and people listed in stack.json (each with a fresh password)."""
        for tenant in DEMO_TENANTS:
            self.create_tenant(tenant["tenant_id"], name=tenant["name"], residency=tenant["residency"])
            self.demo["tenants"].append(dict(tenant))
        for spec in DEMO_USERS:
            user = self.add_user(
                spec["tenant_id"],
                spec["username"],
                spec["roles"],
                password="Demo-" + secrets.token_urlsafe(9),
                consent=True,
            )
            self.demo["users"].append(
                {
                    "username": user.username,
                    "password": user.password,
                    "sub": user.sub,
                    "tenant_id": user.tenant_id,
                    "roles": list(user.roles),
                }
            )
        return self.demo

    # -- faults and counts -------------------------------------------------------------------

    def set_fault(self, region: str, kind: str, *, provider: str = "bedrock", **fault: Any) -> dict[str, Any]:
        """Over the control API, as a test or a person would: set_fault("us-east-1", "throttle", count=2)."""
        return _http_json(
            "POST", f"{self._control(provider)}/_emulator/faults/{region}", {"kind": kind, **fault}
        )

    def clear_faults(self, region: str | None = None, *, provider: str | None = None) -> None:
        for name in (provider,) if provider else ("bedrock", "vertex"):
            if name == "vertex" and not self.vertex_endpoint:
                continue
            suffix = f"/{region}" if region else ""
            _http_json("DELETE", f"{self._control(name)}/_emulator/faults{suffix}")

    def request_counts(self, provider: str = "bedrock") -> dict[str, dict[str, int]]:
        """Requests each region received, per operation and in total: {"us-east-1": {"total": 2, ...}}."""
        return _http_json("GET", f"{self._control(provider)}/_emulator/requests")["counts"]

    def recent_requests(self, provider: str = "bedrock") -> list[dict[str, Any]]:
        return _http_json("GET", f"{self._control(provider)}/_emulator/requests")["recent"]

    def reset_counts(self) -> None:
        for name in ("bedrock", "vertex") if self.vertex_endpoint else ("bedrock",):
            _http_json("DELETE", f"{self._control(name)}/_emulator/requests")

    def reset_breakers(self) -> None:
        """Close every circuit breaker, in the app's memory and in the shared store, so that one test's
        injected failures do not make the next test skip a region."""
        from gateway.domain.breaker import CLOSED, BreakerState
        from gateway.models import tenant_items

        table = self.outputs["TenantsTableName"]
        ddb = self.client("dynamodb")
        stored = ddb.scan(
            TableName=table,
            FilterExpression="begins_with(pk, :b)",
            ExpressionAttributeValues={":b": {"S": tenant_items.breaker_key("")["pk"]}},
        ).get("Items", [])
        keys = [tenant_items.breaker_name(item["pk"]["S"]) for item in stored]
        breakers = getattr(getattr(getattr(self.app, "state", None), "chain", None), "breakers", None)
        if breakers is not None:
            now = time.time()
            breakers.merge({key: BreakerState(CLOSED, 0.0, now, 0) for key in {*keys, *breakers.keys()}})
        for item in stored:
            ddb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})

    def _control(self, provider: str) -> str:
        if provider == "bedrock":
            return self.bedrock_control_url
        if provider == "vertex":
            return self.vertex_endpoint
        raise ValueError(f"unknown provider {provider!r}")

    # -- what .local/stack.json holds --------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "env": self.options.env,
            "region": self.options.region,
            "moto_endpoint": self.moto_endpoint,
            "endpoint": self.endpoint,
            "outputs": dict(self.outputs),
            "cognito": dict(self.cognito),
            "bedrock": {
                "endpoints": dict(self.bedrock_endpoints),
                "control_url": self.bedrock_control_url,
                "regions": {k: list(v) for k, v in self.options.bedrock_regions.items()},
            },
            "vertex": {
                "endpoint": self.vertex_endpoint,
                "control_url": self.vertex_endpoint,
                "project": self.options.vertex_project,
                "regions": dict(self.options.vertex_regions),
            }
            if self.vertex_endpoint
            else None,
            "ports": dict(self._ports),
            "demo": self.demo,
        }


class PoolClients:
    """The pool's app clients, listed from Cognito and listed again when a token names an unknown one
    (machine clients are created at run time by `gatewayctl client create`); locally listing is cheap."""

    def __init__(self, cognito: Any, pool_id: str, *, min_refresh_seconds: float = 0.0) -> None:
        self.cognito, self.pool_id, self.min_refresh_seconds = cognito, pool_id, min_refresh_seconds
        self._ids: frozenset[str] = frozenset()
        self._listed_at = float("-inf")

    def __contains__(self, client_id: object) -> bool:
        if client_id in self._ids:
            return True
        if time.monotonic() - self._listed_at >= self.min_refresh_seconds:
            self._listed_at = time.monotonic()
            ids: set[str] = set()
            for page in self.cognito.get_paginator("list_user_pool_clients").paginate(
                UserPoolId=self.pool_id, MaxResults=60
            ):
                ids.update(c["ClientId"] for c in page["UserPoolClients"])
            self._ids = frozenset(ids)
        return client_id in self._ids


def _create_table(ddb: Any, name: str, table: definitions.TableDefinition) -> str:
    attrs = {table.partition_key, table.sort_key} | {
        a for i in table.indexes for a in (i.partition_key, i.sort_key)
    }
    kwargs: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attrs)],
        "KeySchema": [
            {"AttributeName": table.partition_key, "KeyType": "HASH"},
            {"AttributeName": table.sort_key, "KeyType": "RANGE"},
        ],
    }
    if table.indexes:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": i.name,
                "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [
                    {"AttributeName": i.partition_key, "KeyType": "HASH"},
                    {"AttributeName": i.sort_key, "KeyType": "RANGE"},
                ],
            }
            for i in table.indexes
        ]
    ddb.create_table(**kwargs)
    if table.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
        )
    return name


def _http_json(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
