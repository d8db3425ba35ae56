"""IAM writes for web identity federation: the cluster's OIDC provider and the federated roles.

Builds on the AWS gateway (`migration.clouds.aws`): the same boto3 client (settings,
retries, timeouts, CA bundle) and the same error translation (NoSuchEntity is a
NotFoundError, throttling and 5xx are TransientError, MalformedPolicyDocument and the other
4xx are PermanentError). Reads return `migration.federation`'s plain models.

Verbs follow the gateway conventions: `get_` raises NotFoundError when missing, `delete_`
and `detach_` succeed when already gone. Writes are idempotent the way IAM is: attaching an
attached policy or putting the same inline document again changes nothing, and IAM never
holds an attachment twice.
"""

from __future__ import annotations

import json
from typing import Any

from migration.clouds.aws import AwsGateway, _document
from migration.errors import NotFoundError
from migration.federation import ObservedProvider, ObservedRole, provider_url
from migration.settings import AwsSettings

SERVICE = "iam"


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _tag_dict(tags: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or []}


def _same_url(a: str, b: str) -> bool:
    """Provider URLs as IAM stores them: the host is case-insensitive, the path is not."""
    host_a, _, path_a = a.partition("/")
    host_b, _, path_b = b.partition("/")
    return host_a.lower() == host_b.lower() and path_a == path_b


class IamGateway(AwsGateway):
    """IAM reads and writes of one account. Build one per task from `AwsSettings()`."""

    def __init__(self, settings: AwsSettings) -> None:
        super().__init__(settings)

    # --- OIDC providers -------------------------------------------------------------------

    def get_oidc_provider(self, issuer: str) -> ObservedProvider:
        """The provider registered for `issuer` (an https URL); NotFoundError when there is none."""
        wanted = provider_url(issuer)
        listed = self._call(SERVICE, "list_open_id_connect_providers").get("OpenIDConnectProviderList", [])
        for entry in listed:
            arn = str(entry.get("Arn", ""))
            if _same_url(arn.partition(":oidc-provider/")[2], wanted):
                out = self._call(SERVICE, "get_open_id_connect_provider", OpenIDConnectProviderArn=arn)
                return ObservedProvider(
                    arn=arn,
                    url=str(out.get("Url", wanted)),
                    client_ids=list(out.get("ClientIDList", [])),
                    tags=_tag_dict(out.get("Tags")),
                )
        raise NotFoundError(SERVICE, f"no OIDC provider for {wanted}", 404)

    def create_oidc_provider(self, issuer: str, client_ids: list[str], tags: dict[str, str]) -> str:
        """Register `issuer`; returns the provider's ARN.

        No ThumbprintList: it is optional in the IAM API boto3 ships (botocore's model of
        CreateOpenIDConnectProvider requires only `Url`), and IAM then verifies the issuer's
        JWKS endpoint against its own trusted root CAs, which is what a public AKS issuer
        needs. A pinned thumbprint would only break at the issuer's next certificate change.
        moto accepts the call without one too (it stores an empty list).
        """
        out = self._call(
            SERVICE,
            "create_open_id_connect_provider",
            Url=issuer,
            ClientIDList=list(client_ids),
            Tags=_tag_list(tags),
        )
        return str(out["OpenIDConnectProviderArn"])

    def add_oidc_client_id(self, provider_arn: str, client_id: str) -> None:
        """Add an audience to the provider (IAM ignores one it already has)."""
        self._call(
            SERVICE,
            "add_client_id_to_open_id_connect_provider",
            OpenIDConnectProviderArn=provider_arn,
            ClientID=client_id,
        )

    # --- roles ----------------------------------------------------------------------------

    def get_federated_role(self, name: str) -> ObservedRole:
        """The role with its trust policy, tags, attached policy ARNs and inline documents."""
        role = self._call(SERVICE, "get_role", RoleName=name)["Role"]
        tags = role.get("Tags")
        if tags is None:  # GetRole returns them; ask explicitly should an endpoint leave them out
            tags = self._pages(SERVICE, "list_role_tags", "Tags", RoleName=name)
        attached = self._pages(SERVICE, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
        inline = {
            policy: _document(
                self._call(SERVICE, "get_role_policy", RoleName=name, PolicyName=policy), "PolicyDocument"
            )
            for policy in self._pages(SERVICE, "list_role_policies", "PolicyNames", RoleName=name)
        }
        return ObservedRole(
            name=str(role["RoleName"]),
            arn=str(role["Arn"]),
            trust_policy=_document(role, "AssumeRolePolicyDocument"),
            tags=_tag_dict(tags),
            attached=sorted(str(a["PolicyArn"]) for a in attached),
            inline=inline,
        )

    def role_exists(self, name: str) -> bool:
        try:
            self._call(SERVICE, "get_role", RoleName=name)
        except NotFoundError:
            return False
        return True

    def create_role(self, name: str, trust_policy: dict[str, Any], tags: dict[str, str], description: str = "") -> str:
        """Create the role with its trust policy and tags in one call; returns its ARN."""
        kwargs: dict[str, Any] = {"Description": description} if description else {}
        out = self._call(
            SERVICE,
            "create_role",
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy),
            Tags=_tag_list(tags),
            **kwargs,
        )
        return str(out["Role"]["Arn"])

    def update_trust_policy(self, name: str, trust_policy: dict[str, Any]) -> None:
        self._call(SERVICE, "update_assume_role_policy", RoleName=name, PolicyDocument=json.dumps(trust_policy))

    def attach_policy(self, name: str, policy_arn: str) -> None:
        self._call(SERVICE, "attach_role_policy", RoleName=name, PolicyArn=policy_arn)

    def detach_policy(self, name: str, policy_arn: str) -> None:
        try:
            self._call(SERVICE, "detach_role_policy", RoleName=name, PolicyArn=policy_arn)
        except NotFoundError:
            pass  # not attached (any more): what we wanted

    def put_inline_policy(self, name: str, policy_name: str, document: dict[str, Any]) -> None:
        self._call(
            SERVICE, "put_role_policy", RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )

    def delete_inline_policy(self, name: str, policy_name: str) -> None:
        try:
            self._call(SERVICE, "delete_role_policy", RoleName=name, PolicyName=policy_name)
        except NotFoundError:
            pass  # already gone
