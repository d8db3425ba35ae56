"""The AWS gateway's two value reads (Secrets Manager, SSM), against moto in server mode.

A value comes back hidden (`SecretValue`); errors name the secret, never a value; botocore's
debug log of a response body holding a value is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import boto3
import pytest

from migration.clouds.aws import AwsGateway
from migration.errors import NotFoundError, PermanentError
from migration.secrets import SecretValue
from migration.settings import AwsSettings
from tests.aws_estate import REGION, MotoServer

CURRENT = "jwt-current-0123456789abcdef"
PREVIOUS = "jwt-previous-fedcba9876543210"
PARAMETER = "amqps://user:broker-pass-42@broker.internal"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto-values"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def seeded(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[AwsGateway, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kwargs = {"endpoint_url": moto.url, "region_name": REGION}
    sm = boto3.client("secretsmanager", **kwargs)  # type: ignore[call-overload]
    name = f"mmrv/test/jwt-{id(monkeypatch)}"
    arn = sm.create_secret(Name=name, SecretString=PREVIOUS)["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=CURRENT)
    sm.create_secret(Name=name + "-binary", SecretBinary=b"\x00\x01")
    boto3.client("ssm", **kwargs).put_parameter(  # type: ignore[call-overload]
        Name="/mmrv/test/broker-url", Value=PARAMETER, Type="SecureString", Overwrite=True
    )
    return AwsGateway(AwsSettings.model_validate({"region": REGION, "max_attempts": 1})), arn


def _previous_version(arn: str) -> str:
    import os

    sm = boto3.client("secretsmanager", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION)
    versions = sm.list_secret_version_ids(SecretId=arn)["Versions"]
    return next(v["VersionId"] for v in versions if "AWSPREVIOUS" in v.get("VersionStages", []))


def test_values_come_back_hidden_current_by_default(seeded: tuple[AwsGateway, str]) -> None:
    gateway, arn = seeded
    value = gateway.get_secret_value(arn)
    assert isinstance(value, SecretValue) and value.reveal() == CURRENT and CURRENT not in repr(value)
    assert gateway.get_secret_value(arn, version_stage="AWSPREVIOUS").reveal() == PREVIOUS
    version_id = _previous_version(arn)
    assert gateway.get_secret_value(arn, version_id=version_id).reveal() == PREVIOUS
    assert gateway.get_parameter_value("/mmrv/test/broker-url").reveal() == PARAMETER  # decrypted


def test_errors_name_the_secret_never_a_value(seeded: tuple[AwsGateway, str]) -> None:
    gateway, arn = seeded
    with pytest.raises(NotFoundError) as info:
        gateway.get_secret_value(arn + "-missing")
    assert f"{arn}-missing: GetSecretValue failed" in str(info.value) and info.value.__context__ is None
    with pytest.raises(PermanentError, match="binary value"):
        gateway.get_secret_value(arn.rsplit("-", 1)[0] + "-binary")
    with pytest.raises(NotFoundError, match="/mmrv/test/nothing: GetParameter failed"):
        gateway.get_parameter_value("/mmrv/test/nothing")


def test_botocore_debug_logs_carry_no_value(seeded: tuple[AwsGateway, str], caplog: pytest.LogCaptureFixture) -> None:
    gateway, arn = seeded
    caplog.set_level(logging.DEBUG)
    gateway.get_secret_value(arn)
    gateway.get_parameter_value("/mmrv/test/broker-url")
    gateway.get_secret_metadata(arn)
    assert "Response body" in caplog.text  # botocore did log at debug (other bodies are kept) ...
    for value in (CURRENT, PARAMETER, "broker-pass-42"):
        assert value not in caplog.text  # ... but not those with a value
