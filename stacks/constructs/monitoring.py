"""Dashboard and alarms: API 5xx, throttles, failovers, audit DLQ depth, latency, the audit writer."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import EnvironmentConfig

METRICS_NAMESPACE = "ClaudeGateway"  # the runtime's EMF namespace; dimension Environment=<env>


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        api: apigateway.RestApi,
        function: lambda_.IFunction,
        audit_dlq: sqs.IQueue,
        delivery_stream_names: list[str],
        audit_writers: list[lambda_.IFunction],
        writer_failures: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(
            self,
            "TopicKey",
            enable_key_rotation=True,
            description=f"claude-gateway {config.name} alarm topic",
        )
        key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        five_min = Duration.minutes(5)

        def custom(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"Environment": config.name},
                statistic="Sum",
                period=five_min,
            )

        server_errors = api.metric_server_error(period=five_min, statistic="Sum")
        latency = api.metric_latency(period=five_min, statistic="p99")
        throttles = function.metric_throttles(period=five_min, statistic="Sum")
        failovers = custom("Failovers")
        upstream_errors = custom("UpstreamErrors")
        dead_lettered = custom("AuditDeadLettered")
        misconfigured = custom("UpstreamMisconfigured")
        undeliverable = custom("AuditUndeliverable")
        finish_overrun = custom("FinishOverrun")
        mirror_late = custom("AuditMirrorLate")
        dlq_depth = audit_dlq.metric_approximate_number_of_messages_visible(
            period=five_min, statistic="Maximum"
        )

        specs = [
            ("Api5xx", server_errors, 5, "API 5xx responses in 5 minutes"),
            ("LambdaThrottles", throttles, 1, "the gateway function was throttled"),
            ("Failovers", failovers, 10, "upstream failovers in 5 minutes (a region is degraded)"),
            ("AuditDlqDepth", dlq_depth, 1, "audit records are waiting in the dead-letter queue"),
            ("AuditDeadLettered", dead_lettered, 1, "the runtime dead-lettered audit records"),
            # 403/404 from Bedrock or Vertex: a missing model access grant or profile, not load.
            ("UpstreamMisconfigured", misconfigured, 1, "an upstream answered 403/404: check model access"),
            # Neither Kinesis nor the DLQ took the record: it survives only in the function's log.
            ("AuditUndeliverable", undeliverable, 1, "audit records reached only the function log"),
            # Settlement or the outcome record outlived the 10 s cap: DynamoDB or Kinesis is browning out, and
            # the work now runs after the response ended, where a frozen Lambda may lose it.
            ("FinishOverrun", finish_overrun, 1, "settlement or the audit outcome took over 10 s"),
            # The Cloud Logging copy outlived its budget: it may be lost when the Lambda freezes.
            ("AuditMirrorLate", mirror_late, 1, "Cloud Logging mirror writes took over 3 s"),
            # Streams run long; the p99 over whole responses flags a stuck upstream, not a slow token.
            ("LatencyP99", latency, 120_000, "p99 API latency above 2 minutes"),
        ]
        stream_writer = audit_writers[0]
        specs += [
            # The writer retries a failing batch until it is written, so a stuck shard shows as iterator age.
            (
                "AuditWriterIteratorAge",
                cloudwatch.Metric(
                    namespace="AWS/Lambda",
                    metric_name="IteratorAge",
                    dimensions_map={"FunctionName": stream_writer.function_name},
                    statistic="Maximum",
                    period=five_min,
                ),
                15 * 60 * 1000,
                "audit records wait more than 15 minutes for the writer (docs/decisions/audit-delivery.md)",
            ),
            (
                "AuditWriterFailures",
                writer_failures.metric_approximate_number_of_messages_visible(period=five_min, statistic="Maximum"),
                1,
                "the audit writer gave up on a batch or a staged access-log object: replay it (docs/audit.md)",
            ),
        ]
        for writer in audit_writers:
            specs.append(
                (
                    f"{writer.node.id}Errors",
                    writer.metric_errors(period=five_min, statistic="Sum"),
                    1,
                    f"the {writer.node.id} failed (it retries; see its log group)",
                )
            )
        for index, stream_name in enumerate(delivery_stream_names):
            freshness = cloudwatch.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions_map={"DeliveryStreamName": stream_name},
                statistic="Maximum",
                period=five_min,
            )
            specs.append(
                (
                    f"DeliveryFreshness{index}",
                    freshness,
                    900,
                    "access-log delivery to the staging bucket is more than 15 minutes behind",
                )
            )

        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, metric, threshold, description in specs:
            alarm = cloudwatch.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"claude-gateway {config.name}: {description}",
            )
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            self.alarms[name] = alarm

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"claude-gateway-{config.name}"
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests and errors",
                left=[
                    api.metric_count(period=five_min),
                    server_errors,
                    api.metric_client_error(period=five_min),
                ],
            ),
            cloudwatch.GraphWidget(title="Latency p99 (ms)", left=[latency]),
            cloudwatch.GraphWidget(title="Upstreams", left=[failovers, upstream_errors, misconfigured]),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda",
                left=[
                    function.metric_invocations(period=five_min),
                    throttles,
                    function.metric_errors(period=five_min),
                ],
            ),
            cloudwatch.GraphWidget(title="Audit", left=[dlq_depth, dead_lettered, undeliverable, finish_overrun]),
            cloudwatch.GraphWidget(
                title="Audit writer",
                left=[w.metric_errors(period=five_min) for w in audit_writers],
                right=[specs_metric for name, specs_metric, _, _ in specs if name == "AuditWriterIteratorAge"],
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values())),
        )
