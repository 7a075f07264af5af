"""What the end-to-end suite runs against: a deployed stack, or a local stack it starts itself.

Everything goes the way a platform team goes: the official `anthropic` SDK against the endpoint, and
`gatewayctl` as a separate process for tenants, clients, the audit trail and GDPR. The only difference
between the two is where tokens for machine clients come from (Cognito's /oauth2/token in the cloud;
locally moto has none, so the local stack mints them with the pool's key) and who starts the stack.

Configuration (docs/environments.md, "End-to-end suite"):
- GATEWAY_E2E_TARGET: `local` (default: start a local stack) or `cloud` (`make e2e`).
- cloud: GATEWAY_E2E_ENDPOINT (the stack's ApiEndpoint), GATEWAY_E2E_COGNITO_DOMAIN
  (https://<prefix>.auth.<region>.amazoncognito.com), AWS credentials that may run gatewayctl, and
  AWS_REGION (or GATEWAY_E2E_REGION); GATEWAY_E2E_ENV (default dev). Optional: GATEWAY_E2E_TOKEN (a
  person's access token, `gatewayctl token`), GATEWAY_E2E_MODEL (default claude-haiku-4-5),
  GATEWAY_E2E_RESIDENCY (default us), GATEWAY_E2E_WAIT_SECONDS (how long to wait for the audit trail
  and the access logs; default 900 in the cloud, where delivery is batched, 120 locally).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
CLOUD_REQUIRED = ("GATEWAY_E2E_ENDPOINT", "GATEWAY_E2E_COGNITO_DOMAIN")
T = TypeVar("T")


class NotConfigured(Exception):
    """The cloud target lacks a setting: the suite is skipped, naming it."""


@dataclass
class Config:
    target: str  # "local" or "cloud"
    env: str = "dev"
    region: str | None = None
    endpoint: str = ""
    cognito_domain: str = ""
    person_token: str | None = None
    model: str = "claude-haiku-4-5"
    residency: str = "us"
    wait_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        target = env.get("GATEWAY_E2E_TARGET", "local").strip() or "local"
        common = {
            "model": env.get("GATEWAY_E2E_MODEL") or "claude-haiku-4-5",
            "residency": env.get("GATEWAY_E2E_RESIDENCY") or "us",
        }
        if target == "local":
            return cls("local", wait_seconds=float(env.get("GATEWAY_E2E_WAIT_SECONDS") or 120), **common)
        if target != "cloud":
            raise NotConfigured(f"GATEWAY_E2E_TARGET is {target!r}: use local or cloud")
        missing = [name for name in CLOUD_REQUIRED if not env.get(name)]
        region = env.get("GATEWAY_E2E_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            missing.append("AWS_REGION (or GATEWAY_E2E_REGION)")
        if missing:
            raise NotConfigured(
                "no deployed stack configured: set " + ", ".join(missing)
                + " (docs/environments.md, 'End-to-end suite'); nothing was run against AWS"
            )
        return cls(
            "cloud",
            env=env.get("GATEWAY_E2E_ENV") or "dev",
            region=region,
            endpoint=env["GATEWAY_E2E_ENDPOINT"].rstrip("/") + "/",
            cognito_domain=env["GATEWAY_E2E_COGNITO_DOMAIN"].rstrip("/"),
            person_token=env.get("GATEWAY_E2E_TOKEN") or None,
            wait_seconds=float(env.get("GATEWAY_E2E_WAIT_SECONDS") or 900),
            **common,
        )


@dataclass
class MachineClient:
    client_id: str
    client_secret: str
    name: str
    token: str = ""


@dataclass
class Deployment:
    """A stack the suite can call and administer. `gatewayctl(...)` runs the CLI in its own process."""

    config: Config
    endpoint: str
    env: dict[str, str]  # the CLI's environment
    global_args: list[str]
    local_state: dict[str, Any] = field(default_factory=dict)
    _scope: str = ""

    # -- gatewayctl ---------------------------------------------------------------------------------

    def gatewayctl(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "gatewayctl.cli", *self.global_args, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"gatewayctl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
        return done

    def gatewayctl_json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self.gatewayctl("--json", *args, check=check).stdout)

    # -- tokens -------------------------------------------------------------------------------------

    def machine_token(self, client: MachineClient) -> str:
        """The client-credentials grant, as a machine caller gets its token."""
        if self.config.target == "local":
            import boto3

            from gatewayctl.local import tokens

            idp = boto3.client(
                "cognito-idp",
                region_name=self.local_state["region"],
                endpoint_url=self.local_state["moto_endpoint"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            return tokens.machine_token(idp, self.local_state["cognito"], client.client_id, client.client_secret)
        basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": self._scope}).encode()
        request = urllib.request.Request(
            f"{self.config.cognito_domain}/oauth2/token",
            data=body,
            headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
        )
        # A new app client may need a moment before Cognito's token endpoint knows it.
        return wait_for(
            lambda: _token_or_none(request), what=f"a token for client {client.name}", timeout=120, interval=3
        )

    def person_token(self) -> str | None:
        """A person's token: locally a demo person signs in with `gatewayctl login` and `gatewayctl token`
        prints it; in the cloud the one given in GATEWAY_E2E_TOKEN (sign-in there is interactive)."""
        if self.config.target == "cloud":
            return self.config.person_token
        alice = next(u for u in self.local_state["demo"]["users"] if u["username"].startswith("alice"))
        self.gatewayctl("login", "--username", alice["username"], "--password", alice["password"])
        return self.gatewayctl("token").stdout.strip()

    def set_scope(self, scope: str) -> None:
        self._scope = scope


def _token_or_none(request: urllib.request.Request) -> str | None:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["access_token"]
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 401):  # invalid_client while the new client propagates
            return None
        raise


def wait_for(probe: Callable[[], T | None], *, what: str, timeout: float, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something, or fail after `timeout` naming `what` (delivery into the
    audit bucket is batched: the condition decides, the timeout only bounds a broken deployment)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- starting and stopping --------------------------------------------------------------------------


def local_deployment(config: Config, workdir: Path) -> Deployment:
    """`gatewayctl local up --detach --free-ports` in a directory of its own, as a developer runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # its own moto
    env |= {"GATEWAY_LOCAL_DIR": str(workdir / "local"), "XDG_CONFIG_HOME": str(workdir / "config")}
    deployment = Deployment(config, "", env, ["--target", "local"])
    deployment.gatewayctl("local", "up", "--detach", "--free-ports", timeout=180)
    state = json.loads((workdir / "local" / "stack.json").read_text())
    deployment.local_state = state
    deployment.endpoint = state["endpoint"].rstrip("/") + "/"
    deployment.set_scope(state["cognito"]["invoke_scope"])
    return deployment


def stop_local(deployment: Deployment) -> None:
    deployment.gatewayctl("local", "down", check=False, timeout=120)


def cloud_deployment(config: Config) -> Deployment:
    from gatewayctl.target import load_cloud

    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="gateway-e2e-config-")  # never the operator's sign-ins
    outputs = load_cloud(config.env, config.region).outputs
    deployment = Deployment(
        config, config.endpoint, env, ["--target", "cloud", "--env", config.env, "--region", str(config.region)]
    )
    deployment.set_scope(outputs["InvokeScope"])
    return deployment
