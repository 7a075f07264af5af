"""The REST API: Cognito authorizer with the invoke scope on every model route, request validation, the
Lambda integration in STREAM mode, stage throttling, access logs to the audit bucket, optional WAF."""

from __future__ import annotations

import json

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import EnvironmentConfig
from stacks.constructs.audit_trail import ACCESS_LOG_FORMAT
from stacks.constructs.common import log_group
from stacks.nag import acknowledge_compliance, suppress

STAGE_NAME = "api"
# (path, method, request model name or None)
# Headers that carry a caller's token (the SDK's auth_token, Claude Code's apiKeyHelper, api_key).
TOKEN_HEADERS = ("authorization", "x-api-key")
MODEL_ROUTES: tuple[tuple[str, str, str | None], ...] = (
    ("/v1/messages", "POST", "MessagesRequest"),
    ("/v1/messages/count_tokens", "POST", "CountTokensRequest"),
    ("/v1/models", "GET", None),
    ("/v1/usage", "GET", None),
)

# Only what policy reads; everything else passes through unvalidated so new API fields need no release.
_MESSAGE_FIELDS = {
    "model": {"type": "string", "minLength": 1, "maxLength": 256},
    "messages": {"type": "array", "minItems": 1},
}
_SCHEMAS = {
    "MessagesRequest": {
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            **_MESSAGE_FIELDS,
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean"},
        },
    },
    "CountTokensRequest": {"required": ["model", "messages"], "properties": dict(_MESSAGE_FIELDS)},
}


# (API Gateway response type, HTTP status, Anthropic error type)
GATEWAY_ERRORS = (
    (apigateway.ResponseType.UNAUTHORIZED, "401", "authentication_error"),
    (apigateway.ResponseType.ACCESS_DENIED, "403", "permission_error"),
    (apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "not_found_error"),  # unknown path
    (apigateway.ResponseType.BAD_REQUEST_BODY, "400", "invalid_request_error"),
    (apigateway.ResponseType.THROTTLED, "429", "rate_limit_error"),
    (apigateway.ResponseType.REQUEST_TOO_LARGE, "413", "request_too_large"),
    (apigateway.ResponseType.DEFAULT_5_XX, "500", "api_error"),
)


_ERROR_TEMPLATE = (
    '{"type":"error","error":{"type":"ERROR_TYPE","message":$context.error.messageString},'
    '"request_id":"$context.requestId"}'
)


def _error_template(error_type: str) -> str:
    return _ERROR_TEMPLATE.replace("ERROR_TYPE", error_type)


class GatewayApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        function: lambda_.IFunction,
        user_pool: cognito.IUserPool,
        invoke_scope: str,
        access_log_stream: firehose.CfnDeliveryStream,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=f"claude-gateway-{config.name}",
            description="Anthropic Messages API for Claude on Bedrock and Vertex",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            cloud_watch_role=False,
            disable_execute_api_endpoint=False,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=config.throttle_rate_limit,
                throttling_burst_limit=config.throttle_burst_limit,
                access_log_destination=apigateway.FirehoseLogDestination(access_log_stream),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                metrics_enabled=True,
                tracing_enabled=True,
            ),
        )
        # The stack exports the URL once, as ApiEndpoint (gatewayctl's output key); drop the automatic one.
        self.api.node.try_remove_child("Endpoint")
        self.authorizer = apigateway.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[user_pool]
        )
        self.validator = apigateway.RequestValidator(
            self,
            "BodyValidator",
            rest_api=self.api,
            validate_request_body=True,
            validate_request_parameters=True,
        )
        integration = apigateway.LambdaIntegration(
            function,
            proxy=True,
            response_transfer_mode=apigateway.ResponseTransferMode.STREAM,
            timeout=Duration.minutes(15),
            scope_permission_to_method=False,  # one invoke permission for the API, not one per method
        )
        self.methods: dict[tuple[str, str], apigateway.Method] = {}
        for path, verb, model_name in MODEL_ROUTES:
            resource = self.api.root.resource_for_path(path)
            options: dict = {}
            if model_name:
                options["request_models"] = {"application/json": self._model(model_name)}
                options["request_validator"] = self.validator
            self.methods[(path, verb)] = resource.add_method(
                verb,
                integration,
                authorizer=self.authorizer,
                authorization_type=apigateway.AuthorizationType.COGNITO,
                authorization_scopes=[invoke_scope],
                **options,
            )
        # Errors API Gateway answers itself (authorizer, validation, throttling, unknown paths) in the Anthropic
        # error shape. $context.error.messageString is already a quoted, escaped JSON string.
        for response_type, status, error_type in GATEWAY_ERRORS:
            self.api.add_gateway_response(
                f"{error_type}-{response_type.response_type}",
                type=response_type,
                status_code=status,
                templates={"application/json": _error_template(error_type)},
                response_headers={"request-id": "context.requestId"},
            )
        self.web_acl = self._waf(config) if config.waf_enabled else None
        stage = self.api.deployment_stage
        suppress(
            stage,
            {
                "AwsSolutions-APIG6": (
                    "Execution logging needs the account-wide API Gateway CloudWatch role, which this app does not own "
                    "(it would be shared by every API in the account); access logs of every request go to the audit "
                    "bucket through Firehose instead."
                )
            },
        )
        acknowledge_compliance(
            stage,
            "APIGWExecutionLoggingEnabled",
            (
                "Same reason as AwsSolutions-APIG6: execution logging needs the account-wide CloudWatch role; "
                "every request is access-logged to the audit bucket."
            ),
        )
        acknowledge_compliance(
            stage,
            "APIGWCacheEnabledAndEncrypted",
            (
                "Model answers are per caller and streamed; caching them would serve one caller's answer to another. "
                "No cache, so nothing to encrypt."
            ),
        )
        acknowledge_compliance(
            stage,
            "APIGWSSLEnabled",
            (
                "Backend client certificates authenticate API Gateway to HTTP backends; this backend is a Lambda "
                "invoked through IAM, which has no TLS endpoint to present a certificate to."
            ),
        )
        if not config.waf_enabled:
            no_waf = (
                f"WAF is off in {config.name} (no public traffic; saves the web ACL cost); staging and prod "
                "associate one (stacks/config.py waf_enabled)."
            )
            suppress(stage, {"AwsSolutions-APIG3": no_waf, "NIST.800.53.R5-APIGWAssociatedWithWAF": no_waf})

    def _model(self, name: str) -> apigateway.Model:
        schema = _SCHEMAS[name]
        return self.api.add_model(
            name,
            content_type="application/json",
            model_name=name,
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                type=apigateway.JsonSchemaType.OBJECT,
                required=schema["required"],
                properties={k: _json_schema(v) for k, v in schema["properties"].items()},
            ),
        )

    def _waf(self, config: EnvironmentConfig) -> wafv2.CfnWebACL:
        def managed(name: str, priority: int, overrides: list[str] = ()) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=name,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                            )
                            for rule in overrides
                        ]
                        or None,
                    )
                ),
                visibility_config=_visibility(name),
            )

        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"claude-gateway-{config.name}"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=config.waf_rate_limit_per_5min, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=_visibility("RatePerIp"),
                ),
                managed("AWSManagedRulesAmazonIpReputationList", 1),
                # Prompts are large bodies: the common set's 8 KB body limit would block ordinary requests,
                # so that one rule only counts; API Gateway's own 10 MB limit still applies.
                managed("AWSManagedRulesCommonRuleSet", 2, ["SizeRestrictions_BODY"]),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
            ],
        )
        # WAF logs: the log group name must start with aws-waf-logs-.
        waf_logs = log_group(self, "WafLogs", days=config.log_retention_days)
        waf_logs.node.default_child.log_group_name = f"aws-waf-logs-claude-gateway-{config.name}"
        acknowledge_compliance(
            waf_logs,
            "CloudWatchLogGroupEncrypted",
            (
                "WAF logging needs a resource policy for delivery.logs; with the audit key from the stateful stack "
                "the key policy would also need the log delivery service. WAF logs hold request headers, not "
                "bodies."
            ),
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
                f"aws-waf-logs-claude-gateway-{config.name}"
            ],
            # Tokens never reach the logs: Claude Code's apiKeyHelper sends its token in both headers.
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": header})
                for header in TOKEN_HEADERS
            ],
        ).node.add_dependency(waf_logs)
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )
        return acl


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def _json_schema(spec: dict) -> apigateway.JsonSchema:
    kinds = {
        "string": apigateway.JsonSchemaType.STRING,
        "array": apigateway.JsonSchemaType.ARRAY,
        "integer": apigateway.JsonSchemaType.INTEGER,
        "boolean": apigateway.JsonSchemaType.BOOLEAN,
    }
    return apigateway.JsonSchema(
        type=kinds[spec["type"]],
        min_length=spec.get("minLength"),
        max_length=spec.get("maxLength"),
        min_items=spec.get("minItems"),
        minimum=spec.get("minimum"),
    )
