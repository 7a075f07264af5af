"""The audit trail: stream -> audit writer (Lambda) -> Object Lock bucket <- Athena, plus the DLQ and the
API Gateway access-log witness (Firehose -> staging bucket -> the same writer -> its own prefix).

Why a writer of our own and not Firehose or the Kinesis channel: docs/decisions/audit-delivery.md.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from gateway.models.audit import PARTITION_KEYS, glue_columns

from stacks.audit_queries import ACCESS_LOG_FORMAT as WITNESS_FIELDS
from stacks.audit_queries import ACCESS_LOG_TABLE, AUDIT_TABLE, NAMED_QUERIES
from stacks.bundling import audit_writer_code
from stacks.config import EnvironmentConfig
from stacks.constructs.common import log_group, pin_logical_id
from stacks.definitions import (
    ACCESS_LOG_ERRORS_PREFIX,
    ACCESS_LOG_STAGING_PREFIX,
    ACCESS_LOGS_PREFIX,
    ATHENA_RESULTS_PREFIX,
    AUDIT_ERRORS_PREFIX,
    AUDIT_RECORDS_PREFIX,
)
from stacks.nag import acknowledge_compliance, suppress

# Pinned logical ids of the stateful audit resources (tests/infrastructure/test_logical_ids.py).
AUDIT_STREAM_ID = "AuditStream"
AUDIT_BUCKET_ID = "AuditBucket"
LOG_BUCKET_ID = "AuditLogBucket"
RESULTS_BUCKET_ID = "AthenaResultsBucket"
AUDIT_DLQ_ID = "AuditDlq"
STAGING_BUCKET_ID = "AccessLogStagingBucket"
WRITER_FAILURES_ID = "AuditWriterFailures"

# The JSON fields of an API Gateway access-log line: the witness fields the audit tooling reads
# (stacks/audit_queries.py), plus latency and WAF fields for operators. No principal id, source IP or user
# agent: the bucket is immutable, and GDPR erasure must leave nothing in it that names a person.
ACCESS_LOG_FORMAT: dict[str, str] = {
    **WITNESS_FIELDS,
    "extended_request_id": "$context.extendedRequestId",
    "integration_latency": "$context.integrationLatency",
    "response_latency": "$context.responseLatency",
    "waf_status": "$context.waf.status",
}
# API Gateway renders every value as a JSON string ("-" when empty).
_ACCESS_LOG_COLUMNS = [(name, "string") for name in ACCESS_LOG_FORMAT]


def replay_window_start(stream_retention_hours: int) -> Duration:
    """How old a record gets before the writer gives up on it: half the stream's retention, within the event
    source mapping's bounds (at most 7 days)."""
    return Duration.hours(min(168, stream_retention_hours // 2))


class AuditTrail(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        retention = Duration.days(config.audit_retention_days)

        self.log_bucket = s3.Bucket(
            self,
            LOG_BUCKET_ID,
            # S3 server access logs can only be delivered with SSE-S3, and not into an Object Lock bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(max(config.audit_retention_days, 90)),
                    noncurrent_version_expiration=Duration.days(30),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(self.log_bucket, LOG_BUCKET_ID)
        acknowledge_compliance(
            self.log_bucket,
            "S3DefaultEncryptionKMS",
            (
                "S3 server access logs can only be delivered to a bucket with SSE-S3 default encryption; the "
                "logs hold request metadata, not audit records."
            ),
        )

        lock = (
            s3.ObjectLockRetention.compliance
            if config.object_lock_mode == "COMPLIANCE"
            else s3.ObjectLockRetention.governance
        )(retention)
        self.bucket = s3.Bucket(
            self,
            AUDIT_BUCKET_ID,
            object_lock_enabled=True,
            object_lock_default_retention=lock,
            versioned=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="audit-bucket/",
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(self.bucket, AUDIT_BUCKET_ID)

        # Athena results are query output, not evidence: kept apart so they are not locked for years.
        self.results_bucket = s3.Bucket(
            self,
            RESULTS_BUCKET_ID,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="athena-results-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(30), noncurrent_version_expiration=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(self.results_bucket, RESULTS_BUCKET_ID)

        for bucket in (self.bucket, self.results_bucket, self.log_bucket):
            acknowledge_compliance(
                bucket,
                "S3BucketReplicationEnabled",
                (
                    "Cross-region replication of the audit data is a per-deployment residency decision (a copy in "
                    "another region may break data residency); Object Lock, versioning and KMS protect it in place."
                ),
            )

        self.stream = kinesis.Stream(
            self,
            AUDIT_STREAM_ID,
            stream_mode=kinesis.StreamMode.ON_DEMAND,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=key,
            retention_period=Duration.hours(config.audit_stream_retention_hours),
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(self.stream, AUDIT_STREAM_ID)
        suppress(
            self.stream,
            {
                "AwsSolutions-KDS3": (
                    "Deliberately a customer-managed key: the audit key also guards the bucket and the DLQ, so who may "
                    "read evidence is decided in one key policy, and its use is logged in CloudTrail."
                )
            },
        )

        self.dlq = self._evidence_queue(
            AUDIT_DLQ_ID,
            key,
            "This queue is itself the dead-letter queue of the audit path (records the runtime could not put "
            "on the stream); an alarm fires on its depth and operators replay it.",
        )

        # Records the writer could not deliver (Kinesis batches past their retries, access-log objects past
        # Lambda's asynchronous retries): metadata to replay from (shard and sequence numbers, the staged key),
        # so it is apart from the audit DLQ, whose messages are records that `redrive-dlq` puts back.
        self.writer_failures = self._evidence_queue(
            WRITER_FAILURES_ID,
            key,
            "This queue is itself the on-failure destination of the audit writer (what it could not deliver, "
            "with the stream positions or staged object to replay); an alarm fires on its depth.",
        )

        self.staging_bucket = self._staging_bucket()
        self.writer = self._writer(
            "AuditWriter",
            "audit_writer.handler.kinesis_handler",
            config,
            prefixes=(AUDIT_RECORDS_PREFIX, AUDIT_ERRORS_PREFIX),
            description="writes audit records from the stream into the Object Lock bucket",
        )
        self.writer.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=1000,
                max_batching_window=Duration.seconds(30),  # fewer, larger objects
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                # Retried for half the stream's retention, then its position goes to the failures queue while
                # the stream still holds it for the other half: `gatewayctl audit replay-failures` reads it from
                # there. Retrying until it aged out would leave only the position of records already gone.
                retry_attempts=-1,
                max_record_age=replay_window_start(config.audit_stream_retention_hours),
                parallelization_factor=1,
                on_failure=sources.SqsDlq(self.writer_failures),
            )
        )
        self.access_log_writer = self._writer(
            "AccessLogWriter",
            "audit_writer.handler.staged_access_logs_handler",
            config,
            prefixes=(ACCESS_LOGS_PREFIX, ACCESS_LOG_ERRORS_PREFIX),
            description="writes staged API Gateway access logs into the Object Lock bucket",
            on_failure=destinations.SqsDestination(self.writer_failures),
        )
        # Reads the staged object it is told about, nothing else (no listing).
        self.access_log_writer.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadStagedAccessLogs",
                actions=["s3:GetObject"],
                resources=[self.staging_bucket.arn_for_objects(f"{ACCESS_LOG_STAGING_PREFIX}*")],
            )
        )
        self.key.grant(self.access_log_writer, "kms:Decrypt")
        events.Rule(
            self,
            "StagedAccessLogs",
            description="A staged access-log object is ready for the audit writer",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.staging_bucket.bucket_name]},
                    "object": {"key": [{"prefix": ACCESS_LOG_STAGING_PREFIX}]},
                },
            ),
            targets=[
                targets.LambdaFunction(self.access_log_writer, retry_attempts=185, max_event_age=Duration.hours(24))
            ],
        )

        self.delivery_log_group = log_group(self, "DeliveryLogs", days=config.log_retention_days, key=key)
        self.access_log_delivery = self._access_log_delivery(config)
        self._catalog(config)

    # -- the audit writer ---

    def _evidence_queue(self, construct_id: str, key: kms.IKey, why_no_dlq: str) -> sqs.Queue:
        """A queue of what the audit path could not deliver: under the audit key, kept 14 days, retained."""
        queue = sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(queue, construct_id)
        suppress(queue, {"AwsSolutions-SQS3": why_no_dlq})
        return queue

    def _writer(
        self,
        construct_id: str,
        handler: str,
        config: EnvironmentConfig,
        *,
        prefixes: tuple[str, ...],
        description: str,
        on_failure: lambda_.IDestination | None = None,
    ) -> lambda_.Function:
        logs_group = log_group(
            self,
            f"{construct_id}Logs",
            days=config.log_retention_days,
            key=self.key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"claude-gateway {config.name} {construct_id}: {description}",
        )
        logs_group.grant_write(role)
        # Write-only into its prefixes, retention included (an explicit retention needs PutObjectRetention);
        # no read, no delete, no s3:BypassGovernanceRetention.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteLockedObjects",
                actions=["s3:PutObject", "s3:PutObjectRetention"],
                resources=[self.bucket.arn_for_objects(f"{p}*") for p in prefixes],
            )
        )
        self.key.grant(role, "kms:GenerateDataKey")
        function = lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=audit_writer_code(),
            memory_size=512,
            timeout=Duration.minutes(2),
            role=role,
            log_group=logs_group,
            environment={
                "AUDIT_BUCKET": self.bucket.bucket_name,
                "AUDIT_OBJECT_LOCK_MODE": config.object_lock_mode,
                "AUDIT_RETENTION_DAYS": str(config.audit_retention_days),
            },
            on_failure=on_failure,
            retry_attempts=2 if on_failure is not None else None,
            description=f"claude-gateway {config.name}: {description}",
        )
        policy = role.node.find_child("DefaultPolicy").node.default_child
        function.node.default_child.add_override("DependsOn", [Stack.of(self).get_logical_id(policy)])
        suppress(
            role,
            {
                "AwsSolutions-IAM5": (
                    f"The writer names each object itself (time-stamped keys under tenant and day partitions), so its "
                    f"write grant is per prefix ({', '.join(prefixes)}) and the staged access logs are read per "
                    "prefix; no delete or retention bypass anywhere."
                )
            },
            children=True,
        )
        acknowledge_compliance(
            role,
            "IAMNoInlinePolicy",
            (
                f"The CDK-generated policy belongs to the {construct_id} role alone and lists exact ARNs and "
                "prefixes; a managed policy would only make evidence-writing rights attachable elsewhere."
            ),
            children=True,
        )
        acknowledge_compliance(
            function,
            "LambdaInsideVPC",
            (
                f"The {construct_id} reaches only S3, Kinesis and SQS through their public AWS endpoints with IAM "
                "and TLS; a VPC would add endpoints or NAT for no isolation gain."
            ),
        )
        acknowledge_compliance(
            function,
            "LambdaConcurrency",
            (
                f"The {construct_id} is driven by its event source (one invocation per shard, or per staged object); "
                "reserving concurrency would only let a burst of access logs be throttled."
            ),
        )
        acknowledge_compliance(
            function,
            "LambdaDLQ",
            (
                "A Kinesis event source is not an asynchronous invocation: its failures go to the event source "
                "mapping's on-failure destination (the writer failures queue), which a function DLQ cannot cover."
                if on_failure is None
                else "Its asynchronous failures go to an on-failure destination (the writer failures queue), which "
                "carries the event and the error, more than a dead-letter queue would; an alarm watches its depth."
            ),
        )
        suppress(
            function,
            {
                "AwsSolutions-L1": (
                    "Pinned to python3.13 like the gateway function (issue #2): the runtime is named once for both "
                    "in stacks/bundling.py's PYTHON_VERSION."
                )
            },
        )
        return function

    def _staging_bucket(self) -> s3.Bucket:
        """Where Firehose leaves API Gateway's access logs for the writer: not evidence yet, kept a week."""
        bucket = s3.Bucket(
            self,
            STAGING_BUCKET_ID,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="access-log-staging-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(7), noncurrent_version_expiration=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        pin_logical_id(bucket, STAGING_BUCKET_ID)
        # EventBridge notifications set on the bucket itself: CDK's own switch for them deploys a custom
        # resource (a Lambda of its own) to do the same.
        bucket.node.default_child.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        acknowledge_compliance(
            bucket,
            "S3BucketReplicationEnabled",
            (
                "Staged access logs live a week until the writer copies them into the audit bucket; replicating a "
                "transit copy to another region would add a residency question and nothing to keep."
            ),
        )
        return bucket

    # -- Firehose: API Gateway's access logs, into the staging bucket ---

    def _delivery_role(self, construct_id: str, bucket: s3.IBucket, prefixes: tuple[str, ...]) -> iam.Role:
        role = iam.Role(
            self,
            construct_id,
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )
        # Write-only into the staging bucket: no read, no delete.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:AbortMultipartUpload",
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:PutObject",
                ],
                resources=[bucket.bucket_arn, *(bucket.arn_for_objects(f"{p}*") for p in prefixes)],
            )
        )
        self.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")
        acknowledge_compliance(
            role,
            "IAMNoInlinePolicy",
            (
                "The CDK-generated policy belongs to this one Firehose role and lists exact ARNs; a managed "
                "policy would only make it reusable by roles that must not write evidence."
            ),
            children=True,
        )
        suppress(
            role,
            {
                "AwsSolutions-IAM5": (
                    "Firehose names each object itself (time-stamped keys), so the write grant is per prefix of the "
                    f"staging bucket ({', '.join(prefixes)}), never the audit bucket; no read or delete permission."
                )
            },
            children=True,
        )
        return role

    def _log_stream(self, name: str) -> logs.LogStream:
        return logs.LogStream(
            self,
            f"{name}LogStream",
            log_group=self.delivery_log_group,
            log_stream_name=name,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _access_log_delivery(self, config: EnvironmentConfig) -> firehose.CfnDeliveryStream:
        role = self._delivery_role(
            "AccessLogDeliveryRole", self.staging_bucket, (ACCESS_LOG_STAGING_PREFIX, "staging-errors/")
        )
        log_stream = self._log_stream("access-logs")
        delivery = firehose.CfnDeliveryStream(
            self,
            "AccessLogDelivery",
            # API Gateway delivers access logs only to a Firehose stream whose name starts like this.
            delivery_stream_name=f"amazon-apigateway-claude-gateway-{config.name}",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=self.key.key_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.staging_bucket.bucket_arn,
                role_arn=role.role_arn,
                prefix=ACCESS_LOG_STAGING_PREFIX,
                error_output_prefix="staging-errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=60, size_in_m_bs=5
                ),
                compression_format="GZIP",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=self.key.key_arn
                    )
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.delivery_log_group.log_group_name,
                    log_stream_name=log_stream.log_stream_name,
                ),
            ),
        )
        # Firehose checks its permissions on creation: the role's policy must exist first.
        delivery.node.add_dependency(role.node.find_child("DefaultPolicy"))
        return delivery

    # -- Glue and Athena ---

    def _catalog(self, config: EnvironmentConfig) -> None:
        account = Stack.of(self).account
        self.database = glue.CfnDatabase(
            self,
            "AuditDatabase",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=f"claude_gateway_{config.name.replace('-', '_')}",
                description="claude-gateway audit trail",
            ),
        )
        bucket_root = f"s3://{self.bucket.bucket_name}/"
        self.table = self._json_table(
            "AuditTable",
            AUDIT_TABLE,
            glue_columns(),
            location=f"{bucket_root}{AUDIT_RECORDS_PREFIX}",
            partitions=list(PARTITION_KEYS),
            projection={
                # Tenants are not known at deploy time; queries name them (WHERE tenant = ...).
                "projection.tenant.type": "injected",
                **_date_projection("dt"),
                "storage.location.template": f"{bucket_root}{AUDIT_RECORDS_PREFIX}tenant=${{tenant}}/dt=${{dt}}/",
            },
            description="Audit records: gzip NDJSON, one JSON object per line, written by the audit writer",
        )
        self.access_table = self._json_table(
            "AccessLogTable",
            ACCESS_LOG_TABLE,
            _ACCESS_LOG_COLUMNS,
            location=f"{bucket_root}{ACCESS_LOGS_PREFIX}",
            partitions=[("dt", "string")],
            projection={
                **_date_projection("dt"),
                "storage.location.template": f"{bucket_root}{ACCESS_LOGS_PREFIX}dt=${{dt}}/",
            },
            description="API Gateway access logs: the independent witness of every request id",
        )

        self.workgroup = athena.CfnWorkGroup(
            self,
            "AuditWorkgroup",
            name=f"claude-gateway-{config.name}-audit",
            description="Audit queries: results encrypted, location enforced, scans capped",
            recursive_delete_option=False,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=config.athena_bytes_scanned_cutoff,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=self.key.key_arn
                    ),
                    expected_bucket_owner=account,
                ),
            ),
        )
        for name, (description, sql) in sorted(NAMED_QUERIES.items()):
            athena.CfnNamedQuery(
                self,
                f"Query{_pascal(name)}",
                name=name,
                description=description[:1024],
                database=self.database.ref,
                work_group=self.workgroup.ref,
                query_string=sql,
            )

    def _json_table(
        self,
        construct_id: str,
        name: str,
        columns: list[tuple[str, str]],
        *,
        location: str,
        partitions: list[tuple[str, str]],
        projection: dict[str, str],
        description: str,
    ) -> glue.CfnTable:
        table = glue.CfnTable(
            self,
            construct_id,
            catalog_id=Stack.of(self).account,
            database_name=self.database.ref,
            table_input=glue.CfnTable.TableInputProperty(
                name=name,
                description=description,
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "json",
                    "compressionType": "gzip",
                    "projection.enabled": "true",
                    **projection,
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in partitions],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"ignore.malformed.json": "false"},
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in columns],
                ),
            ),
        )
        return table


def _date_projection(column: str) -> dict[str, str]:
    return {
        f"projection.{column}.type": "date",
        f"projection.{column}.format": "yyyy-MM-dd",
        f"projection.{column}.range": "2026-01-01,NOW",
        f"projection.{column}.interval": "1",
        f"projection.{column}.interval.unit": "DAYS",
    }


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
