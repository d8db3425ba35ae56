"""The Amplify emulator as boto3 sees it: a real `python -m sandbox.amplify` process.

The server helpers at the top (free port, start, wait, stop) are shared with test_seed.py;
the lead will move both files onto `sandbox.manager` fixtures later.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.model import Shape

from sandbox.amplify import build_routes, load_service_model

pytestmark = pytest.mark.sandbox

ACCOUNT = "123456789012"
REGION = "eu-west-1"


# --- real server processes (shared with test_seed.py) ----------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    argv: list[str], url: str, log: Path, health_path: str = "/", env: Mapping[str, str] | None = None
) -> Server:
    """Start `argv` detached, wait until `url + health_path` answers anything over HTTP."""
    handle = log.open("wb")
    process = subprocess.Popen(
        argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
    )
    handle.close()
    server = Server(url, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[:3]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(url + health_path, timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{argv[:3]} did not answer on {url} within 30 s")


def start_amplify(state: Path, log: Path, port: int | None = None) -> Server:
    port = port or free_port()
    argv = [sys.executable, "-m", "sandbox.amplify", "--port", str(port), "--state", str(state)]
    argv += ["--account-id", ACCOUNT, "--region", REGION, "--log-level", "info"]
    return start_server(argv, f"http://127.0.0.1:{port}", log, "/_sandbox/health")


def amplify_client(url: str, region: str = REGION, validate: bool = True) -> Any:
    return boto3.client(
        "amplify",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
        config=Config(parameter_validation=validate, retries={"max_attempts": 1}),
    )


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("amplify")
    running = start_amplify(home / "state.json", home / "amplify.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    return amplify_client(server.url)


@pytest.fixture
def app(client: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    return client.create_app(name=f"app-{request.node.name}"[:60], platform="WEB_COMPUTE")["app"]


# --- round trips ---------------------------------------------------------------------------------


def test_app_round_trip(client: Any) -> None:
    created = client.create_app(
        name="mmrv-web",
        description="front end",
        platform="WEB_COMPUTE",
        environmentVariables={"NEXT_PUBLIC_API_URL": "https://api.example.com"},
        customRules=[{"source": "/api/<*>", "target": "https://api.example.com/<*>", "status": "200"}],
        tags={"Project": "mmrv"},
    )["app"]
    app_id = created["appId"]
    assert app_id.startswith("d") and len(app_id) == 14
    assert created["appArn"] == f"arn:aws:amplify:{REGION}:{ACCOUNT}:apps/{app_id}"
    assert created["defaultDomain"] == f"{app_id}.amplifyapp.com"
    assert created["createTime"] == created["updateTime"]

    fetched = client.get_app(appId=app_id)["app"]
    assert fetched["platform"] == "WEB_COMPUTE"
    assert fetched["environmentVariables"] == {"NEXT_PUBLIC_API_URL": "https://api.example.com"}
    assert fetched["customRules"][0]["status"] == "200"
    assert app_id in [a["appId"] for a in client.list_apps()["apps"]]

    rules = [
        {"source": "/old", "target": "/new", "status": "301"},
        {"source": "/<*>", "target": "/index.html", "status": "404-200"},
    ]
    updated = client.update_app(appId=app_id, customRules=rules, environmentVariables={"A": "1"})["app"]
    assert updated["customRules"] == rules
    assert updated["environmentVariables"] == {"A": "1"}
    assert updated["updateTime"] >= created["updateTime"]
    assert client.get_app(appId=app_id)["app"]["customRules"] == rules

    assert client.delete_app(appId=app_id)["app"]["appId"] == app_id
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_app(appId=app_id)


def test_branches_round_trip(client: Any, app: dict[str, Any]) -> None:
    app_id = app["appId"]
    branch = client.create_branch(
        appId=app_id,
        branchName="main",
        stage="PRODUCTION",
        framework="Next.js - SSR",
        environmentVariables={"NEXT_PUBLIC_ENV": "production"},
    )["branch"]
    assert branch["branchArn"] == f"{app['appArn']}/branches/main"
    assert client.get_app(appId=app_id)["app"]["productionBranch"]["branchName"] == "main"

    # a '/' in a branch name travels percent-encoded in the path
    client.create_branch(appId=app_id, branchName="feature/login", stage="DEVELOPMENT")
    assert client.get_branch(appId=app_id, branchName="feature/login")["branch"]["displayName"] == "feature-login"

    updated = client.update_branch(appId=app_id, branchName="main", environmentVariables={"X": "y"})["branch"]
    assert updated["environmentVariables"] == {"X": "y"}
    assert updated["framework"] == "Next.js - SSR"

    names = [b["branchName"] for b in client.list_branches(appId=app_id)["branches"]]
    assert names == ["main", "feature/login"]
    client.delete_branch(appId=app_id, branchName="feature/login")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_branch(appId=app_id, branchName="feature/login")


def test_domain_association(client: Any, app: dict[str, Any]) -> None:
    app_id = app["appId"]
    for name in ("main", "staging"):
        client.create_branch(appId=app_id, branchName=name)
    settings = [{"prefix": "www", "branchName": "main"}, {"prefix": "staging", "branchName": "staging"}]
    created = client.create_domain_association(appId=app_id, domainName="example.com", subDomainSettings=settings)
    domain = created["domainAssociation"]
    assert domain["domainStatus"] == "AVAILABLE"
    assert [s["dnsRecord"] for s in domain["subDomains"]] == [
        f"www CNAME main.{app['defaultDomain']}",
        f"staging CNAME staging.{app['defaultDomain']}",
    ]
    assert client.get_domain_association(appId=app_id, domainName="example.com")["domainAssociation"] == domain
    assert len(client.list_domain_associations(appId=app_id)["domainAssociations"]) == 1
    assert client.get_branch(appId=app_id, branchName="main")["branch"]["customDomains"] == ["www.example.com"]
    with pytest.raises(client.exceptions.BadRequestException, match="already associated"):
        client.create_domain_association(appId=app_id, domainName="example.com", subDomainSettings=settings)


def test_tags(client: Any, app: dict[str, Any]) -> None:
    arn = app["appArn"]
    client.tag_resource(resourceArn=arn, tags={"Project": "mmrv", "Environment": "staging"})
    client.untag_resource(resourceArn=arn, tagKeys=["Environment"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == {"Project": "mmrv"}
    branch = client.create_branch(appId=app["appId"], branchName="main", tags={"Tier": "web"})["branch"]
    assert client.list_tags_for_resource(resourceArn=branch["branchArn"])["tags"] == {"Tier": "web"}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(resourceArn=f"arn:aws:amplify:{REGION}:{ACCOUNT}:apps/dmissing")


def test_list_apps_paginates(server: Server) -> None:
    # apps live per region: a region of its own keeps other tests' apps out of the count
    client = amplify_client(server.url, region="ap-southeast-2")
    created = [client.create_app(name=f"paged-{i}")["app"]["appId"] for i in range(7)]
    first = client.list_apps(maxResults=3)
    assert len(first["apps"]) == 3 and first["nextToken"]
    pages = list(client.get_paginator("list_apps").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["apps"]) for p in pages] == [3, 3, 1]
    assert [a["appId"] for p in pages for a in p["apps"]] == created
    # region and account come from the SigV4 credential scope
    assert all(":ap-southeast-2:" in a["appArn"] for p in pages for a in p["apps"])
    with pytest.raises(client.exceptions.NotFoundException):
        amplify_client(server.url).get_app(appId=created[0])


def test_list_branches_paginates(client: Any, app: dict[str, Any]) -> None:
    for i in range(5):
        client.create_branch(appId=app["appId"], branchName=f"b{i}")
    pages = client.get_paginator("list_branches").paginate(appId=app["appId"], PaginationConfig={"PageSize": 2})
    assert [b["branchName"] for p in pages for b in p["branches"]] == [f"b{i}" for i in range(5)]


# --- errors -------------------------------------------------------------------------------------


def test_not_found_errors(client: Any, app: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.NotFoundException) as caught:
        client.get_app(appId="dnothere1234")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_branch(appId=app["appId"], branchName="nope")
    with pytest.raises(client.exceptions.NotFoundException):
        client.create_branch(appId="dnothere1234", branchName="main")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_domain_association(appId=app["appId"], domainName="example.org")


def test_bad_requests_name_the_field(server: Server, app: dict[str, Any]) -> None:
    # botocore validates client side; switch that off so the server's own checks answer
    raw = amplify_client(server.url, validate=False)
    with pytest.raises(raw.exceptions.BadRequestException, match=r"'name' failed .* must not be null") as caught:
        raw.create_app(description="no name")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(raw.exceptions.BadRequestException, match=r"'platform' .* enum value set"):
        raw.create_app(name="x", platform="SERVERLESS")
    with pytest.raises(raw.exceptions.BadRequestException, match="subDomainSettings"):
        raw.create_domain_association(appId=app["appId"], domainName="example.com")
    with pytest.raises(raw.exceptions.BadRequestException, match=r"customRules\.1\.member\.target"):
        raw.update_app(appId=app["appId"], customRules=[{"source": "/a"}])
    with pytest.raises(raw.exceptions.BadRequestException, match="maxResults"):
        raw.list_apps(maxResults=500)
    with pytest.raises(raw.exceptions.BadRequestException, match="nextToken"):
        raw.list_apps(nextToken="not-a-token")
    with pytest.raises(raw.exceptions.BadRequestException, match="already exists"):
        for _ in range(2):
            raw.create_branch(appId=app["appId"], branchName="dup")


def test_operations_not_emulated_say_so(client: Any, app: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.BadRequestException, match="does not implement ListJobs"):
        client.list_jobs(appId=app["appId"], branchName="main")


# --- required output members ----------------------------------------------------------------------


def _missing_required(shape: Shape, value: Any, path: str) -> list[str]:
    """Every member the model marks required but the parsed answer lacks, recursively."""
    missing: list[str] = []
    if shape.type_name == "structure":
        for name in shape.required_members:  # type: ignore[attr-defined]
            if name not in value:
                missing.append(f"{path}.{name}")
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if name in value:
                missing += _missing_required(member, value[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            missing += _missing_required(shape.member, item, f"{path}[{index}]")  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        for key, item in value.items():
            missing += _missing_required(shape.value, item, f"{path}[{key}]")  # type: ignore[attr-defined]
    return missing


def test_every_answer_has_the_required_members(client: Any) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def call(operation: str, **kwargs: Any) -> dict[str, Any]:
        answer = getattr(client, operation)(**kwargs)
        calls.append((operation, answer))
        return answer

    app = call("create_app", name="required-members", platform="WEB_COMPUTE")["app"]
    app_id = app["appId"]
    call("get_app", appId=app_id)
    call("list_apps")
    call("update_app", appId=app_id, customRules=[{"source": "/a", "target": "/b", "status": "302"}])
    call("create_branch", appId=app_id, branchName="main", stage="PRODUCTION", framework="Next.js - SSR")
    call("get_branch", appId=app_id, branchName="main")
    call("list_branches", appId=app_id)
    call("update_branch", appId=app_id, branchName="main", enableAutoBuild=False)
    settings = [{"prefix": "www", "branchName": "main"}]
    call("create_domain_association", appId=app_id, domainName="example.net", subDomainSettings=settings)
    call("get_domain_association", appId=app_id, domainName="example.net")
    call("list_domain_associations", appId=app_id)
    call("tag_resource", resourceArn=app["appArn"], tags={"a": "b"})
    call("list_tags_for_resource", resourceArn=app["appArn"])
    call("delete_domain_association", appId=app_id, domainName="example.net")
    call("delete_branch", appId=app_id, branchName="main")
    call("delete_app", appId=app_id)

    model = client.meta.service_model
    problems = []
    for operation, answer in calls:
        name = client.meta.method_to_api_mapping[operation]
        problems += _missing_required(model.operation_model(name).output_shape, answer, name)
    assert problems == []
    assert len(calls) == 16


def test_every_emulated_operation_is_routed_from_the_model() -> None:
    routed = {route.operation.name for route in build_routes(load_service_model())}
    assert {"CreateApp", "ListApps", "CreateDomainAssociation", "TagResource", "UntagResource"} <= routed


# --- persistence ------------------------------------------------------------------------------------


def test_restart_keeps_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = start_amplify(state, tmp_path / "first.log")
    try:
        client = amplify_client(first.url)
        app = client.create_app(name="survivor", basicAuthCredentials="dXNlcjpzM2NyZXQtdmFsdWU=")["app"]
        client.create_branch(appId=app["appId"], branchName="main", environmentVariables={"K": "v"})
    finally:
        first.stop()
    assert json.loads(state.read_text())["apps"][app["appId"]]["app"]["name"] == "survivor"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state.json")] == []  # no temp file left

    second = start_amplify(state, tmp_path / "second.log")
    try:
        client = amplify_client(second.url)
        assert client.get_app(appId=app["appId"])["app"]["createTime"] == app["createTime"]
        assert client.get_branch(appId=app["appId"], branchName="main")["branch"]["environmentVariables"] == {"K": "v"}
        # ids keep counting from the saved state: no reuse after a restart
        assert client.create_app(name="survivor")["app"]["appId"] != app["appId"]
    finally:
        second.stop()
    # request logs carry operations and ids, never credentials
    for log in ("first.log", "second.log"):
        assert "dXNlcjpzM2NyZXQtdmFsdWU=" not in (tmp_path / log).read_text()
