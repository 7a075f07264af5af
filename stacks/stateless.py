"""The stateless stack: Cognito, the gateway function, the REST API, monitoring. Safe to replace."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.config import EnvironmentConfig
from stacks.constructs.api import GatewayApi
from stacks.constructs.gateway_function import GatewayFunction
from stacks.constructs.identity import INVOKE_SCOPE, Identity
from stacks.constructs.monitoring import Monitoring
from stacks.stateful import StatefulStack


class StatelessStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        stateful: StatefulStack,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        audit = stateful.audit

        self.identity = Identity(self, "Identity", config=config)
        self.gateway = GatewayFunction(
            self,
            "Gateway",
            config=config,
            tenants=stateful.tenant_store.tenants,
            usage=stateful.tenant_store.usage,
            audit_stream=audit.stream,
            audit_dlq=audit.dlq,
            data_key=stateful.data_key,
            audit_key=stateful.audit_key,
        )
        self.api = GatewayApi(
            self,
            "Api",
            config=config,
            function=self.gateway.function,
            user_pool=self.identity.user_pool,
            invoke_scope=INVOKE_SCOPE,
            access_log_stream=audit.access_log_delivery,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            api=self.api.api,
            function=self.gateway.function,
            audit_dlq=audit.dlq,
            delivery_stream_names=[audit.access_log_delivery.ref],
            audit_writers=[audit.writer, audit.access_log_writer],
            writer_failures=audit.writer_failures,
        )

        outputs = {
            "UserPoolId": self.identity.user_pool.user_pool_id,
            "UserPoolClientId": self.identity.people_client.user_pool_client_id,
            "CognitoDomainUrl": self.identity.domain.base_url(),
            "InvokeScope": INVOKE_SCOPE,
            "ApiEndpoint": self.api.api.url,
            "GatewayFunctionName": self.gateway.function.function_name,
        }
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)
