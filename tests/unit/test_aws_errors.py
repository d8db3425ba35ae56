"""How the AWS gateway classifies failures, against real servers (moto, and tiny HTTP servers
that answer 429/503/403 or never answer). No in-process mock of boto3."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import trustme

from migration.clouds.aws import AwsGateway, aws_errors
from migration.errors import NotFoundError, PermanentError, TransientError, is_transient
from migration.settings import AwsSettings
from tests.aws_estate import REGION, MotoServer, StatusServer, free_port


def settings(**overrides: object) -> AwsSettings:
    values: dict[str, object] = {
        "region": REGION,
        "max_attempts": 1,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        **overrides,
    }
    return AwsSettings.model_validate(values)


def point_at(mp: pytest.MonkeyPatch, url: str) -> None:
    mp.setenv("AWS_ENDPOINT_URL", url)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.delenv("AWS_ENDPOINT_URL_AMPLIFY", raising=False)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto-errors"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AwsGateway:
    point_at(monkeypatch, moto.url)
    return AwsGateway(settings())


# --- against moto: not found and bad requests ----------------------------------------------


def test_missing_cluster_is_not_found(gateway: AwsGateway) -> None:
    with pytest.raises(NotFoundError) as info:
        gateway.get_ecs_service("no-such-cluster", "mmrv-backend")
    assert (info.value.service, info.value.status) == ("ecs", 400)
    assert "cluster not found" in str(info.value)
    assert not is_transient(info.value)


def test_missing_service_in_existing_cluster_is_not_found(gateway: AwsGateway) -> None:
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="errors-cluster")
    with pytest.raises(NotFoundError) as info:
        gateway.get_ecs_service("errors-cluster", "no-such-service")
    assert info.value.service == "ecs"


def test_missing_task_definition_is_not_found(gateway: AwsGateway) -> None:
    with pytest.raises(NotFoundError) as info:
        gateway.get_task_definition("no-such-family:7")
    assert (info.value.service, info.value.status) == ("ecs", 400)


@pytest.mark.parametrize(
    ("call", "service", "status"),
    [
        (lambda g: g.get_repository("no-such-repo"), "ecr", 400),  # RepositoryNotFoundException
        (lambda g: g.get_secret_metadata("no/such/secret"), "secretsmanager", 404),  # ResourceNotFoundException
        (lambda g: g.get_role("arn:aws:iam::123456789012:role/no-such-role", "task"), "iam", 404),  # NoSuchEntity
        (lambda g: g.get_hosted_zone("no-such-zone.example.org"), "route53", 404),
        (
            lambda g: g.get_target_group(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/none/0123456789abcdef"
            ),
            "elbv2",
            400,  # TargetGroupNotFound
        ),
    ],
)
def test_get_raises_not_found(gateway: AwsGateway, call, service: str, status: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError) as info:
        call(gateway)
    assert (info.value.service, info.value.status) == (service, status)


def test_list_returns_empty(gateway: AwsGateway) -> None:
    assert gateway.list_secrets("nothing/under/here/") == []
    assert gateway.list_scalable_targets("service/none/none") == []
    assert gateway.list_scaling_policies("service/none/none") == []
    assert gateway.list_task_definition_revisions("no-such-family") == []


def test_validation_error_is_permanent(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(monkeypatch, moto.url)
    client = boto3.client("secretsmanager", region_name=REGION)
    with pytest.raises(PermanentError) as info, aws_errors("secretsmanager"):
        client.list_secrets(Filters=[{"Key": "bogus", "Values": ["x"]}])  # type: ignore[list-item]
    assert type(info.value) is PermanentError
    assert info.value.status == 400
    assert "ValidationException" in str(info.value)


def test_client_side_parameter_error_is_permanent(gateway: AwsGateway) -> None:
    with pytest.raises(PermanentError) as info:
        gateway.get_ecs_service("errors-cluster", 42)  # type: ignore[arg-type]
    assert type(info.value) is PermanentError
    assert "ParamValidationError" in str(info.value)


# --- against servers that answer like a struggling cloud -------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "ThrottlingException"), (400, "ThrottlingException"), (503, "ServiceUnavailableException"), (500, "X")],
)
def test_throttling_and_server_errors_are_transient(monkeypatch: pytest.MonkeyPatch, status: int, code: str) -> None:
    server = StatusServer(status=status, code=code)
    try:
        point_at(monkeypatch, server.url)
        with pytest.raises(TransientError) as info:
            AwsGateway(settings()).get_ecs_service("c", "s")
        assert (info.value.service, info.value.status) == ("ecs", status)
        assert is_transient(info.value)
    finally:
        server.stop()


def test_botocore_retries_transient_answers_max_attempts_times(monkeypatch: pytest.MonkeyPatch) -> None:
    server = StatusServer(status=503, code="ServiceUnavailableException")
    try:
        point_at(monkeypatch, server.url)
        with pytest.raises(TransientError):
            AwsGateway(settings(max_attempts=3)).get_ecs_service("c", "s")
        assert server.requests == 3
    finally:
        server.stop()


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDeniedException"), (400, "InvalidParameterException")])
def test_client_errors_are_permanent_and_not_retried(monkeypatch: pytest.MonkeyPatch, status: int, code: str) -> None:
    server = StatusServer(status=status, code=code)
    try:
        point_at(monkeypatch, server.url)
        with pytest.raises(PermanentError) as info:
            AwsGateway(settings(max_attempts=3)).get_ecs_service("c", "s")
        assert type(info.value) is PermanentError
        assert (info.value.service, info.value.status) == ("ecs", status)
        assert code in str(info.value)
        assert server.requests == 1
    finally:
        server.stop()


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    point_at(monkeypatch, url)
    with pytest.raises(TransientError) as info:
        AwsGateway(settings()).list_secrets("mmrv/")
    assert info.value.service == "secretsmanager"
    assert info.value.status is None
    assert "cannot reach the endpoint" in str(info.value)
    assert url in str(info.value)


def test_read_timeout_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    server = StatusServer(hang=True)
    try:
        point_at(monkeypatch, server.url)
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            AwsGateway(settings(read_timeout=0.5)).get_ecs_service("c", "s")
        assert time.monotonic() - started < 10
        assert "timeout" in str(info.value).lower()
    finally:
        server.stop()


def test_amplify_not_found_through_its_own_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.aws_estate import AmplifyServer

    amplify = AmplifyServer()
    try:
        point_at(monkeypatch, f"http://127.0.0.1:{free_port()}")  # everything else unreachable
        monkeypatch.setenv("AWS_ENDPOINT_URL_AMPLIFY", amplify.url)
        gateway = AwsGateway(settings())
        with pytest.raises(NotFoundError) as info:
            gateway.get_amplify_app("mmrv-web")
        assert info.value.service == "amplify"
        app_id = boto3.client("amplify", region_name=REGION).create_app(name="mmrv-web")["app"]["appId"]
        assert gateway.get_amplify_app("mmrv-web").app_id == app_id
        with pytest.raises(NotFoundError) as info:
            gateway.get_amplify_branch(app_id, "no-such-branch")
        assert (info.value.service, info.value.status) == ("amplify", 404)
    finally:
        amplify.stop()


# --- TLS: an untrusted certificate is permanent, a handshake cut short is transient ------------


def _serve(handle: Callable[[socket.socket], None]) -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                handle(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return listener, int(listener.getsockname()[1])


def test_untrusted_certificate_is_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()  # not in the bundle the client trusts
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener, port = _serve(lambda conn: context.wrap_socket(conn, server_side=True).close())
    try:
        point_at(monkeypatch, f"https://127.0.0.1:{port}")
        with pytest.raises(PermanentError) as info:
            AwsGateway(settings(max_attempts=2)).get_ecs_service("c", "s")
        assert type(info.value) is PermanentError
        assert "TLS certificate not trusted" in str(info.value)
    finally:
        listener.close()


def test_handshake_cut_short_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    listener, port = _serve(lambda conn: None)  # accepts, then closes at once (like a reset by a proxy)
    try:
        point_at(monkeypatch, f"https://127.0.0.1:{port}")
        with pytest.raises(TransientError) as info:
            AwsGateway(settings()).get_ecs_service("c", "s")
        assert "TLS connection lost" in str(info.value)
    finally:
        listener.close()
