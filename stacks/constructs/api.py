"""The REST API: Cognito authorizer with the invoke scope on every model route, request validation, the
Lambda integration in STREAM mode, stage throttling, access logs to the audit bucket, optional WAF."""

from __future__ import annotations

import json
import re

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


# Every answer API Gateway gives itself, in the Anthropic error shape:
# (response type, HTTP status or None to keep API Gateway's, Anthropic error type, extra headers).
# THROTTLED is the stage's token bucket (refills every second); QUOTA_EXCEEDED only answers if a usage plan
# is ever attached. The DEFAULT_* types cover whatever type is not listed, keeping its status.
_RETRY_SOON = {"retry-after": "'1'"}
GATEWAY_ERRORS: tuple[tuple[apigateway.ResponseType, str | None, str, dict[str, str]], ...] = (
    (apigateway.ResponseType.DEFAULT_4_XX, None, "invalid_request_error", {}),
    (apigateway.ResponseType.DEFAULT_5_XX, "500", "api_error", {}),
    (apigateway.ResponseType.BAD_REQUEST_BODY, "400", "invalid_request_error", {}),
    (apigateway.ResponseType.BAD_REQUEST_PARAMETERS, "400", "invalid_request_error", {}),
    (apigateway.ResponseType.UNAUTHORIZED, "401", "authentication_error", {}),
    (apigateway.ResponseType.EXPIRED_TOKEN, "401", "authentication_error", {}),
    (apigateway.ResponseType.INVALID_API_KEY, "401", "authentication_error", {}),
    (apigateway.ResponseType.ACCESS_DENIED, "403", "permission_error", {}),
    (apigateway.ResponseType.WAF_FILTERED, "403", "permission_error", {}),
    (apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "not_found_error", {}),  # unknown path
    (apigateway.ResponseType.RESOURCE_NOT_FOUND, "404", "not_found_error", {}),
    (apigateway.ResponseType.REQUEST_TOO_LARGE, "413", "request_too_large", {}),
    (apigateway.ResponseType.UNSUPPORTED_MEDIA_TYPE, "415", "invalid_request_error", {}),
    (apigateway.ResponseType.THROTTLED, "429", "rate_limit_error", _RETRY_SOON),
    (apigateway.ResponseType.QUOTA_EXCEEDED, "429", "rate_limit_error", {"retry-after": "'3600'"}),
    (apigateway.ResponseType.AUTHORIZER_FAILURE, "500", "api_error", {}),
    (apigateway.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, "500", "api_error", {}),
    (apigateway.ResponseType.API_CONFIGURATION_ERROR, "500", "api_error", {}),
    (apigateway.ResponseType.INTEGRATION_FAILURE, "502", "api_error", {}),
    (apigateway.ResponseType.INTEGRATION_TIMEOUT, "504", "timeout_error", {}),
)


_ERROR_TEMPLATE = (
    '{"type":"error","error":{"type":"ERROR_TYPE","message":$context.error.messageString},'
    '"request_id":"$context.requestId"}'
)


def _error_template(error_type: str) -> str:
    return _ERROR_TEMPLATE.replace("ERROR_TYPE", error_type)


def anthropic_error(error_type: str, message: str) -> str:
    """A fixed Anthropic error body, for answers the WAF gives itself (it has no request context)."""
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}, separators=(",", ":"))


def greater_than_regex(limit: int) -> str:
    """A regex that matches exactly the decimal integers (no sign, no leading zero) greater than `limit`."""
    digits = str(limit)
    alternatives = [f"[1-9][0-9]{{{len(digits)},}}"]  # more digits than the limit has
    for i, digit in enumerate(digits):
        if digit != "9":
            rest = len(digits) - i - 1
            alternatives.append(f"{digits[:i]}[{int(digit) + 1}-9][0-9]{{{rest}}}")
    return f"^({'|'.join(alternatives)})$"


# The managed rules that inspect the body (AWS WAF developer guide, "Baseline rule groups" and "Use-case
# specific rule groups"). A prompt is code, HTML, SQL, shell and URLs by nature, so on the model routes these
# only count (and label); everywhere else a label of theirs still blocks (rule BodySignaturesOffModelRoutes).
MANAGED_BODY_RULES: dict[str, dict[str, str]] = {
    "AWSManagedRulesCommonRuleSet": {
        "SizeRestrictions_BODY": "awswaf:managed:aws:core-rule-set:SizeRestrictions_Body",
        "CrossSiteScripting_BODY": "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body",
        "GenericLFI_BODY": "awswaf:managed:aws:core-rule-set:GenericLFI_Body",
        "GenericRFI_BODY": "awswaf:managed:aws:core-rule-set:GenericRFI_Body",
        "EC2MetaDataSSRF_BODY": "awswaf:managed:aws:core-rule-set:EC2MetaDataSSRF_Body",
    },
    "AWSManagedRulesKnownBadInputsRuleSet": {
        "JavaDeserializationRCE_BODY": "awswaf:managed:aws:known-bad-inputs:JavaDeserializationRCE_Body",
        "Log4JRCE_BODY": "awswaf:managed:aws:known-bad-inputs:Log4JRCE_Body",
        "ReactJSRCE_BODY": "awswaf:managed:aws:known-bad-inputs:ReactJSRCE_Body",
    },
    "AWSManagedRulesSQLiRuleSet": {
        "SQLi_BODY": "awswaf:managed:aws:sql-database:SQLi_Body",
        "SQLiExtendedPatterns_BODY": "awswaf:managed:aws:sql-database:SQLiExtendedPatterns_Body",
    },
}
# The routes whose bodies are prompts: API Gateway's path (the stage, or a custom domain's base path, first).
_PROMPT_PATHS = tuple(path for path, verb, _ in MODEL_ROUTES if verb == "POST")
MODEL_ROUTE_PATH_REGEX = "^(/[^/]+)?(" + "|".join(re.escape(p) for p in _PROMPT_PATHS) + ")/?$"


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
        self.authorizer = apigateway.CognitoUserPoolsAuthorizer(self, "Authorizer", cognito_user_pools=[user_pool])
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
        for response_type, status, error_type, headers in GATEWAY_ERRORS:
            self.api.add_gateway_response(
                f"{error_type}-{response_type.response_type}",
                type=response_type,
                status_code=status,
                templates={"application/json": _error_template(error_type)},
                response_headers={"request-id": "context.requestId", **headers},
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
        """Managed rules on headers, URI, query string and cookies everywhere; on the model routes' bodies
        (prompts, which are code by nature) only what no legitimate prompt can trip: size and malformed JSON.
        docs/security-checks.md ("WAF") explains each rule and the sources."""
        W = wafv2.CfnWebACL  # noqa: N806 - the L1 module's property classes, read like the template
        model_route = _model_route_statement()

        def managed(name: str, priority: int) -> W.RuleProperty:
            counted = MANAGED_BODY_RULES.get(name, {})
            return W.RuleProperty(
                name=name,
                priority=priority,
                override_action=W.OverrideActionProperty(none={}),
                statement=W.StatementProperty(
                    managed_rule_group_statement=W.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=name,
                        rule_action_overrides=[
                            W.RuleActionOverrideProperty(name=rule, action_to_use=W.RuleActionProperty(count={}))
                            for rule in counted
                        ]
                        or None,
                    )
                ),
                visibility_config=_visibility(name),
            )

        def block(
            name: str, priority: int, statement: W.StatementProperty, answer: str | None = None
        ) -> W.RuleProperty:
            custom = None
            if answer is not None:
                status, headers = _WAF_ANSWERS[answer][0], _WAF_ANSWERS[answer][3]
                custom = W.CustomResponseProperty(
                    response_code=status,
                    custom_response_body_key=answer,
                    response_headers=[W.CustomHTTPHeaderProperty(name=k, value=v) for k, v in headers.items()] or None,
                )
            return W.RuleProperty(
                name=name,
                priority=priority,
                action=W.RuleActionProperty(block=W.BlockActionProperty(custom_response=custom)),
                statement=statement,
                visibility_config=_visibility(name),
            )

        body_labels = [label for rules in MANAGED_BODY_RULES.values() for label in rules.values()]
        acl = W(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=W.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"claude-gateway-{config.name}"),
            custom_response_bodies={
                key: W.CustomResponseBodyProperty(content_type="APPLICATION_JSON", content=anthropic_error(kind, text))
                for key, (_, kind, text, _) in _WAF_ANSWERS.items()
            },
            rules=[
                block(
                    "RatePerIp",
                    0,
                    W.StatementProperty(
                        rate_based_statement=W.RateBasedStatementProperty(
                            limit=config.waf_rate_limit_per_5min, aggregate_key_type="IP"
                        )
                    ),
                    "RateLimited",
                ),
                managed("AWSManagedRulesAmazonIpReputationList", 1),
                # WAF sees at most the first 16 KB of a body, so the size is read from content-length; API
                # Gateway's own 10 MB limit (REQUEST_TOO_LARGE) bounds bodies sent without one.
                block(
                    "ModelBodyTooLarge",
                    2,
                    _and(
                        model_route,
                        W.StatementProperty(
                            regex_match_statement=W.RegexMatchStatementProperty(
                                field_to_match=W.FieldToMatchProperty(single_header={"Name": "content-length"}),
                                regex_string=greater_than_regex(config.waf_max_body_bytes),
                                text_transformations=[_NO_TRANSFORMATION],
                            )
                        ),
                    ),
                    "BodyTooLarge",
                ),
                # A body WAF cannot parse as JSON matches (InvalidFallbackBehavior MATCH); one past WAF's
                # inspection limit does not (NO_MATCH) and is left to API Gateway's request validator.
                block(
                    "ModelBodyNotJson",
                    3,
                    _and(
                        model_route,
                        W.StatementProperty(
                            size_constraint_statement=W.SizeConstraintStatementProperty(
                                field_to_match=W.FieldToMatchProperty(
                                    json_body=W.JsonBodyProperty(
                                        match_pattern=W.JsonMatchPatternProperty(included_paths=["/model"]),
                                        match_scope="VALUE",
                                        invalid_fallback_behavior="MATCH",
                                        oversize_handling="NO_MATCH",
                                    )
                                ),
                                comparison_operator="GT",
                                size=256,  # the request model's maxLength for `model`
                                text_transformations=[_NO_TRANSFORMATION],
                            )
                        ),
                    ),
                    "BodyNotJson",
                ),
                managed("AWSManagedRulesCommonRuleSet", 4),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 5),
                managed("AWSManagedRulesSQLiRuleSet", 6),
                # The body rules above only counted; off the model routes their labels still block.
                block(
                    "BodySignaturesOffModelRoutes",
                    7,
                    _and(
                        W.StatementProperty(
                            or_statement=W.OrStatementProperty(
                                statements=[
                                    W.StatementProperty(
                                        label_match_statement=W.LabelMatchStatementProperty(scope="LABEL", key=label)
                                    )
                                    for label in body_labels
                                ]
                            )
                        ),
                        W.StatementProperty(not_statement=W.NotStatementProperty(statement=model_route)),
                    ),
                ),
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


# WAF's own answers (custom responses): key -> (status, Anthropic error type, message, headers).
_WAF_ANSWERS: dict[str, tuple[int, str, str, dict[str, str]]] = {
    "RateLimited": (
        429,
        "rate_limit_error",
        "Too many requests from this address; retry later.",
        {"retry-after": "60"},
    ),
    "BodyTooLarge": (413, "request_too_large", "The request body is larger than this gateway accepts.", {}),
    "BodyNotJson": (400, "invalid_request_error", "The request body is not valid JSON.", {}),
}
_NO_TRANSFORMATION = wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")


def _and(*statements: wafv2.CfnWebACL.StatementProperty) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        and_statement=wafv2.CfnWebACL.AndStatementProperty(statements=list(statements))
    )


def _model_route_statement() -> wafv2.CfnWebACL.StatementProperty:
    """A POST to a route whose body is a prompt (/v1/messages, /v1/messages/count_tokens)."""
    W = wafv2.CfnWebACL  # noqa: N806
    return _and(
        W.StatementProperty(
            byte_match_statement=W.ByteMatchStatementProperty(
                field_to_match=W.FieldToMatchProperty(method={}),
                positional_constraint="EXACTLY",
                search_string="POST",
                text_transformations=[_NO_TRANSFORMATION],
            )
        ),
        W.StatementProperty(
            regex_match_statement=W.RegexMatchStatementProperty(
                field_to_match=W.FieldToMatchProperty(uri_path={}),
                regex_string=MODEL_ROUTE_PATH_REGEX,
                text_transformations=[_NO_TRANSFORMATION],
            )
        ),
    )


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
