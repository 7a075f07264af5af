"""Cognito: the user pool, the `invoke` scope, the people's app client, and optional company SSO."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from stacks.config import EnvironmentConfig
from stacks.nag import suppress

RESOURCE_SERVER_IDENTIFIER = "claude-gateway"
INVOKE_SCOPE_NAME = "invoke"
INVOKE_SCOPE = f"{RESOURCE_SERVER_IDENTIFIER}/{INVOKE_SCOPE_NAME}"


class Identity(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        production = config.termination_protection
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            self_sign_up_enabled=False,  # people are invited; machine clients are created by gatewayctl
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=getattr(cognito.Mfa, config.mfa),
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=getattr(cognito.FeaturePlan, config.feature_plan),
            # Threat protection (compromised credentials, adaptive auth) exists only on the Plus plan.
            standard_threat_protection_mode=(
                cognito.StandardThreatProtectionMode.FULL_FUNCTION if config.threat_protection else None
            ),
            deletion_protection=production,
            removal_policy=RemovalPolicy.RETAIN if production else RemovalPolicy.DESTROY,
        )

        if config.feature_plan != "PLUS":
            suppress(
                self.user_pool,
                {
                    "AwsSolutions-COG8": (
                        f"{config.name} uses the {config.feature_plan} plan to save cost: no real users; staging and "
                        "prod are on Plus with threat protection (stacks/config.py)."
                    )
                },
            )
        if config.mfa != "REQUIRED":
            suppress(
                self.user_pool,
                {
                    "AwsSolutions-COG2": (
                        f"MFA is {config.mfa} in {config.name} (test users only); staging and prod require it."
                    )
                },
            )

        self.invoke_scope = cognito.ResourceServerScope(
            scope_name=INVOKE_SCOPE_NAME, scope_description="Call the Messages API"
        )
        self.resource_server = self.user_pool.add_resource_server(
            "ResourceServer", identifier=RESOURCE_SERVER_IDENTIFIER, scopes=[self.invoke_scope]
        )
        # Prefixes are global per region: without a site's own, the account id keeps dev's unique.
        prefix = config.cognito_domain_prefix or f"claude-gateway-{config.name}-{Stack.of(self).account}"
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix)
        )

        providers = [cognito.UserPoolClientIdentityProvider.COGNITO]
        federated = self._identity_provider(config)
        if federated is not None:
            providers.append(cognito.UserPoolClientIdentityProvider.custom(config.identity_provider.name))

        # People: authorization code with PKCE, a public client (no secret on a laptop or in a browser).
        self.people_client = self.user_pool.add_client(
            "PeopleClient",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.resource_server(self.resource_server, self.invoke_scope),
                ],
                # The CLI's loopback in every environment (`gatewayctl login`), then the site's own.
                callback_urls=list(config.people_callback_urls),
                logout_urls=list(config.people_logout_urls),
            ),
            supported_identity_providers=providers,
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(1),
        )
        if federated is not None:
            self.people_client.node.add_dependency(federated)

    def _identity_provider(self, config: EnvironmentConfig) -> Construct | None:
        idp = config.identity_provider
        if idp is None:
            return None
        mapping = cognito.AttributeMapping(email=cognito.ProviderAttribute.other(idp.attribute_mapping_email))
        if idp.kind == "saml":
            return cognito.UserPoolIdentityProviderSaml(
                self,
                "Saml",
                user_pool=self.user_pool,
                name=idp.name,
                metadata=cognito.UserPoolIdentityProviderSamlMetadata.url(idp.metadata_url),
                attribute_mapping=mapping,
            )
        return cognito.UserPoolIdentityProviderOidc(
            self,
            "Oidc",
            user_pool=self.user_pool,
            name=idp.name,
            client_id=idp.client_id,
            # A dynamic reference ({{resolve:secretsmanager:...}}): CloudFormation resolves it at deploy time,
            # the template never holds the secret.
            client_secret=SecretValue.secrets_manager(idp.client_secret_name).unsafe_unwrap(),
            issuer_url=idp.issuer_url,
            scopes=["openid", "email"],
            attribute_mapping=mapping,
        )
