"""The stateless stack: the invoke scope on every model route, STREAM mode and the 15-minute timeout, the
Lambda's runtime, environment and least-privilege role, WAF and alarms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gateway.settings import Settings

from stacks.config import load
from stacks.constructs.api import MODEL_ROUTES
from stacks.constructs.gateway_function import bedrock_resources
from stacks.constructs.identity import INVOKE_SCOPE
from tests.infrastructure.conftest import config_for, only, resources

pytestmark = pytest.mark.infrastructure

LWA_VARIABLES = {
    "AWS_LAMBDA_EXEC_WRAPPER",
    "AWS_LWA_INVOKE_MODE",
    "AWS_LWA_PORT",
    "AWS_LWA_READINESS_CHECK_PATH",
}


def _methods(template) -> list[dict]:
    return [
        m["Properties"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    ]


def test_every_model_route_requires_the_invoke_scope(synthesized):
    methods = _methods(synthesized.stateless)
    assert len(methods) == len(MODEL_ROUTES)
    for method in methods:
        assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["AuthorizationScopes"] == [INVOKE_SCOPE]
        assert "AuthorizerId" in method


def test_lambda_integration_streams_with_a_fifteen_minute_timeout(synthesized):
    for method in _methods(synthesized.stateless):
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["ResponseTransferMode"] == "STREAM"
        assert integration["TimeoutInMillis"] == 15 * 60 * 1000
        assert "response-streaming-invocations" in json.dumps(integration["Uri"])


def test_request_bodies_are_validated_on_post_routes(synthesized):
    for method in _methods(synthesized.stateless):
        if method["HttpMethod"] == "POST":
            assert "RequestValidatorId" in method
            assert set(method["RequestModels"]) == {"application/json"}


def test_stage_throttling_and_access_logs_to_firehose(synthesized):
    _, stage = only(synthesized.stateless, "AWS::ApiGateway::Stage")
    config = config_for(synthesized.env)
    settings = stage["Properties"]["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == config.throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == config.throttle_burst_limit
    destination = json.dumps(stage["Properties"]["AccessLogSetting"]["DestinationArn"])
    assert "AccessLogDelivery" in destination
    assert json.loads(stage["Properties"]["AccessLogSetting"]["Format"])["request_id"] == "$context.requestId"


def _function(template) -> dict:
    functions = [
        f["Properties"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "run.sh"
    ]
    assert len(functions) == 1
    return functions[0]


def test_gateway_function_runtime_and_adapter(synthesized):
    function = _function(synthesized.stateless)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Timeout"] == 900
    assert "LambdaAdapterLayerArm64" in json.dumps(function["Layers"])
    variables = function["Environment"]["Variables"]
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert variables["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"


def test_function_environment_is_exactly_what_settings_reads(synthesized):
    variables = _function(synthesized.stateless)["Environment"]["Variables"]
    # Resolve CloudFormation references to placeholders; AWS_REGION comes from the Lambda runtime.
    environ = {
        k: v if isinstance(v, str) else f"resolved-{k.lower()}"
        for k, v in variables.items()
        if k not in LWA_VARIABLES
    }
    settings = Settings.from_env({**environ, "AWS_REGION": "us-east-1"})
    assert settings.env == synthesized.env
    expected = {k: v for k, v in settings.to_env().items() if k in environ}
    assert set(environ) == set(expected), "the stack sets a variable Settings does not read"
    assert dict(settings.bedrock_regions) == {
        k: tuple(v) for k, v in config_for(synthesized.env).bedrock_regions().items()
    }


def _statements(template):
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in resources(template, kind).values():
            yield from policy["Properties"]["PolicyDocument"]["Statement"]


def test_bedrock_permissions_name_catalog_arns_only(synthesized):
    statements = [
        s
        for s in _statements(synthesized.stateless)
        if any(a.startswith("bedrock:") for a in _list(s["Action"]))
    ]
    assert statements
    granted = []
    for statement in statements:
        assert sorted(statement["Action"]) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        for resource in _list(statement["Resource"]):
            rendered = json.dumps(resource)
            assert "*" not in rendered, rendered
            assert ":inference-profile/" in rendered or ":foundation-model/" in rendered
            granted.append(rendered)
    profiles, models = bedrock_resources(config_for(synthesized.env), account="123456789012")
    assert len(set(granted)) == len(profiles) + len(models)


def test_each_bedrock_policy_fits_the_managed_policy_size_limit(synthesized):
    for policy in resources(synthesized.stateless, "AWS::IAM::ManagedPolicy").values():
        document = _render(policy["Properties"]["PolicyDocument"])
        assert len(json.dumps(document, separators=(",", ":"))) < 6144


_PSEUDO = {"AWS::Partition": "aws", "AWS::AccountId": "123456789012", "AWS::Region": "ap-southeast-4"}


def _render(value):
    """The document as IAM will see it: pseudo parameters and joins resolved to their longest plain form."""
    if isinstance(value, dict):
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(_render(p) for p in parts)
        if "Ref" in value and value["Ref"] in _PSEUDO:
            return _PSEUDO[value["Ref"]]
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def test_bedrock_arns_follow_the_environment_residencies():
    profiles, models = bedrock_resources(load("dev"), account="123456789012")
    assert (
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        in profiles
    )
    assert not any(":eu-" in p for p in profiles)  # dev serves us and global only
    assert "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0" in models
    assert "arn:aws:bedrock:us-east-2::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0" in models


def test_no_wildcard_resource_outside_xray(synthesized):
    for statement in _statements(synthesized.stateless):
        if statement["Resource"] == "*":
            assert all(a.startswith("xray:") for a in _list(statement["Action"])), statement


def _list(value):
    return value if isinstance(value, list) else [value]


def test_alarms_cover_errors_throttles_failovers_dlq_and_latency(synthesized):
    metrics = {
        (a["Properties"].get("Namespace"), a["Properties"].get("MetricName"))
        for a in resources(synthesized.stateless, "AWS::CloudWatch::Alarm").values()
    }
    for expected in [
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/Lambda", "Throttles"),
        ("ClaudeGateway", "Failovers"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
    ]:
        assert expected in metrics
    only(synthesized.stateless, "AWS::CloudWatch::Dashboard")


def test_waf_only_where_configured(dev, prod):
    assert resources(dev.stateless, "AWS::WAFv2::WebACLAssociation") == {}
    only(prod.stateless, "AWS::WAFv2::WebACLAssociation")


def test_user_pool_mfa_and_threat_protection_per_environment(dev, prod):
    _, dev_pool = only(dev.stateless, "AWS::Cognito::UserPool")
    _, prod_pool = only(prod.stateless, "AWS::Cognito::UserPool")
    assert dev_pool["Properties"]["MfaConfiguration"] == "OPTIONAL"
    assert prod_pool["Properties"]["MfaConfiguration"] == "ON"
    assert (
        prod_pool["Properties"]["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
        or prod_pool["Properties"]["UserPoolTier"] == "PLUS"
    )
    assert prod_pool["Properties"]["Policies"]["PasswordPolicy"]["MinimumLength"] >= 14
    _, client = only(prod.stateless, "AWS::Cognito::UserPoolClient")
    assert client["Properties"]["AllowedOAuthFlows"] == ["code"]
    assert client["Properties"].get("GenerateSecret") in (None, False)


def test_gateway_errors_use_the_anthropic_error_shape(synthesized):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synthesized.stateless, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    assert responses["THROTTLED"]["StatusCode"] == "429"
    template = responses["UNAUTHORIZED"]["ResponseTemplates"]["application/json"]
    # What API Gateway renders: messageString arrives as a JSON string literal.
    rendered = template.replace("$context.error.messageString", '"Unauthorized"').replace(
        "$context.requestId", "abc"
    )
    assert json.loads(rendered) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Unauthorized"},
        "request_id": "abc",
    }


def test_waf_logs_redact_the_token_headers(prod):
    _, logging = only(prod.stateless, "AWS::WAFv2::LoggingConfiguration")
    assert logging["Properties"]["RedactedFields"] == [
        {"SingleHeader": {"Name": "authorization"}},
        {"SingleHeader": {"Name": "x-api-key"}},
    ]


def test_every_metric_the_runtime_emits_has_an_alarm(synthesized):
    # The runtime's EMF metrics are named where they are counted; an unwatched one is a silent signal.
    source = "\n".join(p.read_text() for p in Path("lambda_src/gateway").rglob("*.py"))
    emitted = set(re.findall(r"metrics\.count\(\s*\"(\w+)\"", source))
    assert {"Failovers", "UpstreamErrors", "AuditDeadLettered"} <= emitted
    alarmed = {
        a["Properties"].get("MetricName")
        for a in resources(synthesized.stateless, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "ClaudeGateway"
    }
    # UpstreamErrors is graphed only: the Failovers alarm fires on the same cause.
    assert emitted - {"UpstreamErrors"} <= alarmed


def test_the_role_stays_within_iams_managed_policy_attachment_quota(synthesized):
    """IAM attaches at most 10 managed policies to a role by default: the per-residency chunks must fit."""
    attached = [
        p
        for p in resources(synthesized.stateless, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"].get("Roles")
    ]
    assert 0 < len(attached) <= 10


def _people_client(template) -> dict:
    clients = [
        c["Properties"]
        for c in resources(template, "AWS::Cognito::UserPoolClient").values()
        if c["Properties"].get("AllowedOAuthFlows") == ["code"]
    ]
    assert len(clients) == 1
    return clients[0]


def test_the_cli_loopback_callback_is_registered_in_every_environment(every_environment):
    from stacks.definitions import CLI_CALLBACK_URL

    client = _people_client(every_environment.stateless)
    assert CLI_CALLBACK_URL in client["CallbackURLs"]
    assert client["CallbackURLs"] == list(config_for(every_environment.env).people_callback_urls)


def test_sign_in_domain_prefix_is_the_site_one_or_unique_per_account(every_environment):
    _, domain = only(every_environment.stateless, "AWS::Cognito::UserPoolDomain")
    prefix = config_for(every_environment.env).cognito_domain_prefix
    if prefix is None:  # dev: no site setting needed, the account id keeps it unique
        assert "AWS::AccountId" in json.dumps(domain["Properties"]["Domain"])
    else:
        assert domain["Properties"]["Domain"] == prefix


# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
_ANTHROPIC_TYPES = {
    "400": "invalid_request_error",
    "401": "authentication_error",
    "403": "permission_error",
    "404": "not_found_error",
    "413": "request_too_large",
    "415": "invalid_request_error",
    "429": "rate_limit_error",
    "500": "api_error",
    "502": "api_error",
    "504": "timeout_error",
}


def test_every_gateway_response_is_an_anthropic_error_with_the_request_id(synthesized):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synthesized.stateless, "AWS::ApiGateway::GatewayResponse").values()
    }
    required = {
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "WAF_FILTERED",
        "REQUEST_TOO_LARGE",
        "THROTTLED",
        "QUOTA_EXCEEDED",
        "INTEGRATION_TIMEOUT",
        "BAD_REQUEST_BODY",
        "MISSING_AUTHENTICATION_TOKEN",
        "EXPIRED_TOKEN",
        "AUTHORIZER_FAILURE",
    }
    assert required <= set(responses), required - set(responses)
    for kind, response in responses.items():
        rendered = (
            response["ResponseTemplates"]["application/json"]
            .replace("$context.error.messageString", '"Something \\"quoted\\""')
            .replace("$context.requestId", "req-1")
        )
        body = json.loads(rendered)
        assert body["type"] == "error" and body["request_id"] == "req-1", kind
        assert body["error"]["message"] == 'Something "quoted"', kind
        status = response.get("StatusCode")
        if status is None:  # DEFAULT_4XX keeps API Gateway's own 4xx status
            assert kind == "DEFAULT_4XX" and body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["type"] == _ANTHROPIC_TYPES[status], kind
        assert response["ResponseParameters"]["gatewayresponse.header.request-id"] == "context.requestId", kind
    assert responses["THROTTLED"]["StatusCode"] == "429"
    for kind in ("THROTTLED", "QUOTA_EXCEEDED"):
        retry_after = responses[kind]["ResponseParameters"]["gatewayresponse.header.retry-after"]
        assert re.fullmatch(r"'\d+'", retry_after), retry_after
    assert (responses["WAF_FILTERED"]["StatusCode"], responses["INTEGRATION_TIMEOUT"]["StatusCode"]) == ("403", "504")


def test_cloud_logging_mirror_is_switched_per_environment(every_environment):
    variables = _function(every_environment.stateless)["Environment"]["Variables"]
    config = config_for(every_environment.env)
    expected = "true" if config.audit_mirror_cloud_logging else "false"
    assert variables["AUDIT_MIRROR_CLOUD_LOGGING"] == expected
    if config.audit_mirror_cloud_logging:  # the mirror writes with the Vertex credentials, to the Vertex project
        assert variables["VERTEX_PROJECT"] and json.loads(variables["VERTEX_WIF_CONFIG"])["type"] == "external_account"
    # Both states are covered: the prod test site turns the mirror on, dev leaves it off (the default).
    assert config_for("prod").audit_mirror_cloud_logging and not config_for("dev").audit_mirror_cloud_logging
