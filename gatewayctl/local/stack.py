"""The local stack, composed in one process: what `gatewayctl local up` runs and what the tests use.

One process, threads for the servers: moto's ThreadedMotoServer, the Bedrock emulator (one port
per region plus a control port, one uvicorn server), the Vertex emulator, and the gateway app
under uvicorn behind the local Cognito authorizer. In-process threads rather than a process per
part because the test harness starts a stack per xdist worker and process start-up (imports of
boto3, moto, the app) would dominate its time; `local up` runs this same composition in one
child process (gatewayctl/local/serve.py) so `local down` stops everything with one signal to one
process group. Only the audit pump is a separate process.

The process environment is part of the stack: AWS_ENDPOINT_URL points botocore (the app's
adapters, the admin library, the pump) at the moto server, with fake credentials, and
AWS_REGION/AWS_DEFAULT_REGION let google.auth.aws sign without the EC2 metadata server. `start()`
sets them in os.environ; this is why a stack owns its process.

The parts live beside this module: resources.py (what is created in moto), seeding.py (people and
tenants), tokens.py, control.py (faults, counts, breakers), pool_clients.py, state.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayctl.local import control, resources, seeding, tokens
from gatewayctl.local.access_log import AccessLogMiddleware
from gatewayctl.local.authorizer import PEOPLE_LOCAL_SCOPE, CognitoAuthorizer, JwksCache, issuer_for, jwks_url_for
from gatewayctl.local.bedrock_emulator import BedrockEmulator
from gatewayctl.local.pool_clients import PoolClients
from gatewayctl.local.seeding import User
from gatewayctl.local.servers import ThreadedServer, bind, port_of
from gatewayctl.local.vertex_emulator import VertexEmulator, vertex_wif_config
from gatewayctl.target import Target

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_BEDROCK_REGIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-west-2"),
    "eu": ("eu-west-1", "eu-central-1"),
}
DEFAULT_VERTEX_REGIONS = {"us": "us-east5", "eu": "europe-west1"}


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
    bedrock_regions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_BEDROCK_REGIONS))
    vertex_project: str | None = "claude-gateway-local"
    vertex_regions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VERTEX_REGIONS))
    # The audit bucket's Object Lock, as an environment's object_lock_mode and audit_retention_days: the
    # bucket's default retention, and what the pump sets on each object as the cloud writer does.
    object_lock_mode: str = "GOVERNANCE"
    audit_retention_days: int = 1
    # extra Settings fields for the app (e.g. {"breaker_open_seconds": 1.0})
    settings_overrides: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "warning"


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
        moto_patches.serialize_kinesis()  # nor concurrent audit puts their records
        moto_patches.bound_memory()  # nor a long-running stack its memory

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
        control_socket = bind(ports.bedrock_control, host, what="Bedrock emulator control")
        region_sockets = [
            bind(ports.bedrock_base + i if ports.bedrock_base else 0, host, what=f"Bedrock emulator {region}")
            for i, region in enumerate(regions)
        ]
        by_region = dict(zip(regions, region_sockets, strict=True))
        self.bedrock.regions_by_port.update({port_of(s): r for r, s in by_region.items()})
        self._servers.append(
            ThreadedServer(
                self.bedrock.app,
                [control_socket, *region_sockets],
                name="bedrock-emulator",
                log_level=self.options.log_level,
            ).start()
        )
        self.bedrock_control_url = f"http://{host}:{port_of(control_socket)}"
        self.bedrock_endpoints = {r: f"http://{host}:{port_of(s)}" for r, s in by_region.items()}
        self._ports["bedrock_control"] = port_of(control_socket)
        self._ports["bedrock"] = {r: port_of(s) for r, s in by_region.items()}
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
        self.access_log = AccessLogMiddleware(self.authorizer, self.client("s3"), self.outputs["AuditBucketName"])
        sock = bind(self.options.ports.gateway, self.options.host, what="gateway")
        self._servers.append(
            ThreadedServer(self.access_log, [sock], name="gateway", log_level=self.options.log_level).start()
        )
        self.endpoint = f"http://{self.options.host}:{port_of(sock)}"
        self._ports["gateway"] = port_of(sock)
        self.outputs["ApiEndpoint"] = self.endpoint
        return self.endpoint

    def start_pump(self, log_dir: Path, *, interval: float = 2.0) -> subprocess.Popen | None:
        """The audit pump (`python -m gatewayctl.local.pump`), if it exists; None otherwise."""
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
            **self.writer_env(),
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

    def writer_env(self) -> dict[str, str]:
        """The retention variables the cloud's audit writer gets from its environment's config."""
        return {
            "AUDIT_OBJECT_LOCK_MODE": self.options.object_lock_mode,
            "AUDIT_RETENTION_DAYS": str(self.options.audit_retention_days),
        }

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
        made = resources.create_resources(
            self.client,
            self.name,
            region=self.options.region,
            moto_endpoint=self.moto_endpoint,
            endpoint=self.endpoint,
            retention=(self.options.object_lock_mode, self.options.audit_retention_days),
        )
        self.outputs, self.cognito = made.outputs, made.cognito
        return self.outputs

    def settings(self) -> Any:
        """The app's Settings: the moto resources, the emulators' endpoints, and the overrides."""
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

    def target(self) -> Target:
        """The gatewayctl Target for this stack (what `--target local` loads from stack.json)."""
        return Target(
            kind="local",
            region=self.options.region,
            outputs=dict(self.outputs),
            endpoint_url=self.moto_endpoint,
            local=self.state(),
        )

    # -- people, tokens, tenants (gatewayctl/local/seeding.py, tokens.py) -----------------------

    def create_user(self, username: str, password: str | None = None) -> User:
        return seeding.create_user(self.client("cognito-idp"), self.cognito["user_pool_id"], username, password)

    def add_user(
        self,
        tenant_id: str,
        username: str,
        roles: Iterable[str] = ("basic_user",),
        *,
        password: str | None = None,
        consent: bool = False,
    ) -> User:
        return seeding.add_user(self.target(), tenant_id, username, roles, password=password, consent=consent)

    def create_tenant(self, tenant_id: str, **kwargs: Any) -> dict[str, Any]:
        from gatewayctl import admin

        return admin.create_tenant(self.target(), tenant_id, **kwargs)

    def seed_demo(self) -> dict[str, Any]:
        self.demo = seeding.seed_demo(self.target())
        return self.demo

    def access_token(self, username: str, password: str) -> str:
        return tokens.access_token(self.client("cognito-idp"), self.cognito["people_client_id"], username, password)

    def machine_token(
        self, client_id: str, client_secret: str, *, scope: str | None = None, expires_in: int = 3600
    ) -> str:
        return tokens.machine_token(
            self.client("cognito-idp"), self.cognito, client_id, client_secret, scope=scope, expires_in=expires_in
        )

    # -- faults, counts, breakers (gatewayctl/local/control.py) --------------------------------

    def set_fault(self, region: str, kind: str, *, provider: str = "bedrock", **fault: Any) -> dict[str, Any]:
        """Over the control API, as a test or a person would: set_fault("us-east-1", "throttle", count=2)."""
        return control.set_fault(self._control(provider), region, kind, **fault)

    def clear_faults(self, region: str | None = None, *, provider: str | None = None) -> None:
        for name in (provider,) if provider else self._providers():
            if name == "vertex" and not self.vertex_endpoint:
                continue
            control.clear_faults(self._control(name), region)

    def request_counts(self, provider: str = "bedrock") -> dict[str, dict[str, int]]:
        """Requests each region received, per operation and in total: {"us-east-1": {"total": 2, ...}}."""
        return control.requests_seen(self._control(provider))["counts"]

    def recent_requests(self, provider: str = "bedrock") -> list[dict[str, Any]]:
        return control.requests_seen(self._control(provider))["recent"]

    def reset_counts(self) -> None:
        for name in self._providers():
            control.reset_counts(self._control(name))

    def hide_profile(self, profile: str, region: str | None = None) -> None:
        """Bedrock's ListInferenceProfiles stops listing a profile (in one region, or all)."""
        control.set_catalog(self.bedrock_control_url, {"hide_profile": profile, "region": region})

    def mark_legacy(self, model_id: str, *, legacy_time: str | None = None, end_of_life: str | None = None) -> None:
        """Bedrock's ListFoundationModels lists a base model as LEGACY (with its dates, ISO 8601)."""
        change = {"legacy": model_id, "legacy_time": legacy_time, "end_of_life": end_of_life}
        control.set_catalog(self.bedrock_control_url, change)

    def hide_vertex_model(self, model: str) -> None:
        """Vertex's publisher-model get answers 404 for a model."""
        control.set_catalog(self.vertex_endpoint, {"hide_model": model})

    def reset_catalogs(self) -> None:
        """What each emulated provider offers back to the whole base catalog."""
        for name in self._providers():
            control.clear_catalog(self._control(name))

    def reset_breakers(self) -> None:
        """Close every circuit breaker, in the app and in the shared store."""
        control.close_breakers(self.app, self.client("dynamodb"), self.outputs["TenantsTableName"])

    def _providers(self) -> tuple[str, ...]:
        return ("bedrock", "vertex") if self.vertex_endpoint else ("bedrock",)

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
            # The app's environment, as a deployed function has it: what `gatewayctl health` probes with.
            "gateway_env": self.settings().to_env() if self.outputs else {},
        }
