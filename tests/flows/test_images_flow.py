"""The images flow ECR -> ACR end to end, on real servers, through the TLS fault proxy.

Stand-ins (until the sandbox's ACR side lands, when these can run on `sandbox.manager.up`):
moto + the Amplify emulator seeded with MMRV's estate by `sandbox.seed` (real images in a
Distribution registry with ECR's `AWS`/token login), a second Distribution registry as ACR
behind an ACR-style token server (`/oauth2/exchange`, `/oauth2/token`), the ARM emulator
whose ACR reports that registry as its `loginServer`, and the sandbox's fault proxy in
front of both registries (one CA for the proxy and ARM).

Covers: copy (every digest identical at both ends, the manifests byte for byte; a rerun
moves nothing), import falling back to copy when ACR cannot import, a tag conflict
reported and never overwritten, 20 % faults, a `run images` process killed mid-transfer
and the rerun moving only the rest, the docker strategy through podman (digest change
refused unless allowed), and `plan --phase images` / `run images --json` from the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from migration.clouds.registry import BasicLogin, RegistryAuth, RegistryClient, RegistryOptions
from migration.images import ImagesIncomplete
from migration.spec import Spec, load_spec
from sandbox.azure.testing import RunningEmulator, serve_for_tests
from sandbox.azure.tokens import ALL_SANDBOX_AUDIENCES, mint_token
from sandbox.endpoints import SeedEndpoints
from sandbox.oci import ImageBuilder, ImageSpec, LayerSpec, RegistryPusher
from sandbox.seed import SeedSummary, seed_aws
from tests.conftest import ROOT, SPEC_PATH
from tests.registries import (
    AcrTokenServer,
    RunningProxy,
    RunningRegistry,
    blob_bytes_served,
    blob_uploads,
    start_fault_proxy,
    start_podman,
    start_registry,
)
from tests.sandbox.test_amplify import ACCOUNT, REGION, Server, start_amplify
from tests.sandbox.test_seed import start_moto

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

CLI = str(Path(sys.executable).parent / "mmrv-migrate")
ENV = "staging"
SEED = 4
# the active task definition (1.4.0, also `latest`) and the two before it; the front end's three newest
EXPECTED_TAGS = {
    "mmrv-backend": {"1.4.0", "latest", "1.3.0", "1.2.0"},
    "mmrv-web": {"2.2.0", "latest", "2.1.0", "2.0.0"},
}


@dataclass
class Estate:
    home: Path
    spec: Spec
    seeded: SeedSummary
    source: RunningRegistry
    target: RunningRegistry
    tokens: AcrTokenServer
    proxy: RunningProxy
    emulator: RunningEmulator
    env: dict[str, str]

    @property
    def acr_host(self) -> str:
        return self.proxy.host("acr")

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def source_client(self) -> RegistryClient:
        auth = RegistryAuth(basic=BasicLogin(self.source.user, self.source.password))
        return RegistryClient(self.proxy.host("ecr"), auth, RegistryOptions(ca_bundle=str(self.proxy.tls.ca)))

    def target_client(self) -> RegistryClient:
        token = self.env["MMRV_AZURE_ACCESS_TOKEN"]
        auth = RegistryAuth(aad_token=lambda: token)
        return RegistryClient(self.acr_host, auth, RegistryOptions(ca_bundle=str(self.proxy.tls.ca)))


def build_estate(home: Path, *, fault_rate: float) -> Iterator[Estate]:
    spec = load_spec(SPEC_PATH)
    started: list[object] = []
    environment = spec.environment(ENV)
    token = mint_token(
        "0e8f5b2a-6d1c-4f7e-9a3b-5c2d1e0f9a8b",
        environment.azure.tenant_id,
        audience=ALL_SANDBOX_AUDIENCES,
        lifetime_seconds=6 * 3600,
    )
    try:
        tokens = AcrTokenServer(home / "token", accepted_aad_tokens={token}, tenant=environment.azure.tenant_id)
        started.append(tokens)
        source = start_registry(home / "ecr", "ecr", user="AWS", password=f"{ACCOUNT}-auth-token")
        started.append(source)
        target = start_registry(home / "acr", "acr", token=tokens)
        started.append(target)
        proxy = start_fault_proxy(
            home / "proxy", {"ecr": source.port, "acr": target.port}, fault_rate=fault_rate, seed=11
        )
        started.append(proxy)
        (home / "moto").mkdir()
        moto: Server = start_moto(home / "moto")
        started.append(moto)
        amplify: Server = start_amplify(home / "amplify.json", home / "amplify.log")
        started.append(amplify)
        endpoints = SeedEndpoints(
            aws_endpoint=moto.url,
            amplify_endpoint=amplify.url,
            ecr_registry_url=source.url,
            ecr_registry_user="AWS",
            ecr_registry_password=f"{ACCOUNT}-auth-token",
            region=REGION,
            account_id=ACCOUNT,
        )
        seeded = seed_aws(endpoints, spec, SEED)
        # ARM speaks TLS with the proxy's CA: one MMRV_CA_BUNDLE for everything, as in the sandbox
        certs = home / "arm" / "certs"
        certs.mkdir(parents=True)
        shutil.copy(proxy.tls.ca, certs / "ca.pem")
        shutil.copy(proxy.tls.server_cert, certs / "server.pem")
        shutil.copy(proxy.tls.server_key, certs / "server.key")
        with serve_for_tests(home / "arm", registry_host=proxy.host("acr")) as emulator:
            rg = emulator.arm_client(ResourceManagementClient, environment.azure.subscription_id)
            rg.resource_groups.create_or_update(environment.azure.resource_group, {"location": "westeurope"})
            acr = emulator.arm_client(ContainerRegistryManagementClient, environment.azure.subscription_id)
            acr.registries.begin_create(
                environment.azure.resource_group,
                environment.azure.acr.name,
                {"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"adminUserEnabled": False}},
            ).result()
            env = {
                "AWS_ENDPOINT_URL": moto.url,
                "AWS_ENDPOINT_URL_AMPLIFY": amplify.url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "MMRV_ECR_REGISTRY": proxy.host("ecr"),
                "MMRV_CA_BUNDLE": str(proxy.tls.ca),
                "MMRV_ARM_URL": emulator.url,
                "MMRV_AZURE_ACCESS_TOKEN": token,
                "MMRV_ARM_POLL_SECONDS": "0.05",
                "MMRV_AWS_MAX_ATTEMPTS": "8",
                "MMRV_TASK_RETRIES": "4",  # under 20 % faults 2 ran out once in CI
                "MMRV_RETRY_BASE_SECONDS": "0.1",
                "MMRV_REGISTRY_BACKOFF_SECONDS": "0.05",
            }
            yield Estate(home, spec, seeded, source, target, tokens, proxy, emulator, env)
    finally:
        for server in reversed(started):
            server.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    yield from build_estate(tmp_path_factory.mktemp("images"), fault_rate=0.0)


@pytest.fixture(scope="module")
def faulty_estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    yield from build_estate(tmp_path_factory.mktemp("images-faulty"), fault_rate=0.2)


@pytest.fixture()
def clean(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> Estate:
    """The estate with an empty ACR and this process pointed at it."""
    estate.target.wipe()
    estate.activate(monkeypatch)
    return estate


def expected_images(estate: Estate) -> dict[tuple[str, str], set[str]]:
    """(repository, digest) -> tags, from what the seeder pushed."""
    out: dict[tuple[str, str], set[str]] = {}
    for image in estate.seeded.images:
        if image.tag in EXPECTED_TAGS[image.repository]:
            out.setdefault((image.repository, image.digest), set()).add(image.tag)
    return out


def assert_identical_at_both_ends(estate: Estate, images: dict[tuple[str, str], set[str]]) -> None:
    with estate.source_client() as source, estate.target_client() as target:
        for (repo, digest), tags in images.items():
            at_source = source.get_manifest(repo, digest)
            at_target = target.get_manifest(repo, digest)
            assert at_target.data == at_source.data and at_target.digest == digest
            for tag in tags:
                assert target.manifest_digest(repo, tag) == digest, (repo, tag)
            for blob in at_source.blobs():
                assert target.blob_exists(repo, blob.digest)


# --- copy -------------------------------------------------------------------------------------


def test_copy_carries_every_image_with_its_digest_and_a_rerun_moves_nothing(clean: Estate) -> None:
    from flows.images import images_flow

    result = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    ledger = result.ledger
    assert ledger is not None and ledger.complete
    expected = expected_images(clean)
    assert {(e.source.split("/", 1)[1].split("@")[0], e.source.split("@")[1]) for e in ledger.images} == set(expected)
    assert all(e.status == "transferred" and e.verified and e.strategy == "copy" for e in ledger.images)
    assert ledger.bytes_moved == result.plan.bytes_to_move == result.plan.unique_bytes > 0
    assert_identical_at_both_ends(clean, expected)

    mark = clean.source.mark()
    again = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    assert again.plan.plan.is_empty and again.plan.bytes_to_move == 0
    assert again.ledger is not None and again.ledger.bytes_moved == 0
    assert {e.status for e in again.ledger.images} == {"present"}
    assert blob_bytes_served(clean.source.access_since(mark)) == 0


def test_import_falls_back_to_copy_when_acr_cannot_import(clean: Estate) -> None:
    from flows.images import images_flow

    result = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="import")
    ledger = result.ledger
    assert ledger is not None and ledger.complete
    for entry in ledger.images:
        assert entry.verified
        # the ARM emulator has no importImage yet: each image says why it was copied instead
        if entry.strategy == "copy":
            assert "import failed" in entry.note and "copied instead" in entry.note
    assert_identical_at_both_ends(clean, expected_images(clean))


def test_a_tag_pointing_elsewhere_in_acr_is_a_conflict_never_overwritten(clean: Estate, tmp_path: Path) -> None:
    from flows.images import images_flow

    builder = ImageBuilder(99, tmp_path)
    other = builder.build(ImageSpec(layers=(LayerSpec("foreign", 10_000, "x.bin", "x"),), labels={"who": "else"}))
    with clean.target_client() as target:
        user, refresh = target.registry_password("mmrv-backend")
    # pushed by someone else, straight to the registry with the daemon-style login
    with RegistryPusher(f"https://{clean.acr_host}", user, refresh, verify=str(clean.proxy.tls.ca)) as pusher:
        pusher.client.auth = None  # the registry wants a Bearer token: get one the Docker way
        token = _docker_token(clean, user, refresh, "repository:mmrv-backend:pull,push")
        pusher.client.headers["Authorization"] = f"Bearer {token}"
        pusher.push("mmrv-backend", other, ["1.3.0"])

    with pytest.raises(ImagesIncomplete) as info:
        images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    ledger = info.value.ledger
    blocked = [e for e in ledger.images if e.status == "blocked"]
    assert len(blocked) == 1 and blocked[0].tags == ["1.3.0"] and "conflict" in blocked[0].note
    assert all(e.verified for e in ledger.images if e.status == "transferred")
    assert "1.3.0" in str(info.value)
    with clean.target_client() as target:
        assert target.manifest_digest("mmrv-backend", "1.3.0") == other.digest  # untouched


def _docker_token(estate: Estate, user: str, password: str, scope: str) -> str:
    import httpx

    response = httpx.get(
        estate.tokens.realm, params={"service": estate.target.host, "scope": scope}, auth=(user, password)
    )
    response.raise_for_status()
    return str(response.json()["token"])


# --- faults and a kill ------------------------------------------------------------------------


def test_copy_completes_and_verifies_under_20_percent_faults(
    faulty_estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.images import images_flow

    faulty_estate.target.wipe()
    faulty_estate.activate(monkeypatch)
    result = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    assert result.ledger is not None and result.ledger.complete
    assert_identical_at_both_ends(faulty_estate, expected_images(faulty_estate))
    faults = sum(faulty_estate.proxy.stats(r)["faults_total"] for r in ("ecr", "acr"))
    print(f"faults injected on the registries: {faults}")
    assert faults > 0


def test_a_run_killed_mid_transfer_is_completed_by_a_rerun_moving_only_the_rest(
    faulty_estate: Estate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.images import images_flow

    faulty_estate.target.wipe()
    env = cli_env(faulty_estate)
    mark = faulty_estate.target.mark()
    run = subprocess.Popen(
        [CLI, "run", "images", "--env", ENV, "--strategy", "copy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "run.log").open("wb"),
        start_new_session=True,  # its ephemeral Prefect server goes down with it
    )
    try:
        deadline = time.monotonic() + 180
        while not [u for u in blob_uploads(faulty_estate.target.access_since(mark)) if u.query.get("digest")]:
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)

    time.sleep(1.0)  # an upload whose body was all sent may still be committed after the kill (its answer is lost)
    faulty_estate.activate(monkeypatch)
    with faulty_estate.target_client() as target:
        expected = expected_images(faulty_estate)
        with faulty_estate.source_client() as source:
            blobs = {b.digest: b.size for repo, d in expected for b in source.get_manifest(repo, d).blobs()}
        there = {d for d in blobs if any(target.blob_exists(r, d) for r in ("mmrv-backend", "mmrv-web"))}
    assert there and len(there) < len(blobs), "the kill came too late (or too early) to test a resume"
    source_mark = faulty_estate.source.mark()
    rerun = images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="copy")
    assert rerun.ledger is not None and rerun.ledger.complete
    rest = sum(size for d, size in blobs.items() if d not in there)
    assert rerun.ledger.bytes_moved == rerun.plan.bytes_to_move == rest
    # nothing that made it before the kill is read again (what is read may be read twice: faults restart uploads)
    read = [a for a in faulty_estate.source.access_since(source_mark) if a.method == "GET" and "/blobs/" in a.path]
    assert {a.path.rsplit("/", 1)[-1] for a in read} == set(blobs) - there
    assert_identical_at_both_ends(faulty_estate, expected)
    print(f"killed with {len(there)} of {len(blobs)} blobs in ACR; the rerun moved {rerun.ledger.bytes_moved} bytes")


# --- docker -----------------------------------------------------------------------------------


def test_docker_strategy_refuses_a_rewritten_digest_unless_the_spec_allows_it(
    clean: Estate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.images import images_flow

    podman = start_podman(tmp_path / "podman", [clean.proxy.host("ecr"), clean.acr_host])
    try:
        monkeypatch.setenv("DOCKER_HOST", podman.docker_host)
        with pytest.raises(ImagesIncomplete) as info:
            images_flow(spec_path=str(SPEC_PATH), env=ENV, strategy="docker")
        failed = info.value.ledger.failed
        assert failed and all("changed the digest" in e.note for e in failed)

        allowing = tmp_path / "allow.yaml"
        data = yaml.safe_load(SPEC_PATH.read_text())
        data["images"] = {"allow_digest_change": True}
        allowing.write_text(yaml.safe_dump(data))
        clean.target.wipe()
        result = images_flow(spec_path=str(allowing), env=ENV, strategy="docker")
        assert result.ledger is not None and result.ledger.complete
        for entry in result.ledger.images:
            assert entry.verified and entry.strategy == "docker"
            assert entry.target.split("@")[1] != entry.source.split("@")[1]  # what podman does
    finally:
        podman.stop()


# --- the command line -------------------------------------------------------------------------


def cli_env(estate: Estate) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MMRV_", "PREFECT_API_URL"))}
    env.update(estate.env)
    env.update(COLUMNS="300", PREFECT_HOME=str(ROOT / ".prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def test_plan_and_run_images_from_the_command_line(estate: Estate, tmp_path: Path) -> None:
    estate.target.wipe()
    env = cli_env(estate)
    plan_json = tmp_path / "plan.json"
    planned = subprocess.run(
        [CLI, "plan", "--phase", "images", "--env", ENV, "--json", str(plan_json)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert planned.returncode == 0, planned.stderr[-3000:]
    actions = json.loads(plan_json.read_text())["actions"]
    assert len(actions) == len(expected_images(estate)) and {a["kind"] for a in actions} == {"create"}
    assert "to move" in planned.stdout

    ledger_json = tmp_path / "ledger.json"
    ran = subprocess.run(
        [CLI, "run", "images", "--env", ENV, "--strategy", "copy", "--json", str(ledger_json)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    ledger = json.loads(ledger_json.read_text())
    for entry in ledger["images"]:
        assert entry["source"].startswith(estate.proxy.host("ecr") + "/")
        assert entry["target"] == entry["source"].replace(estate.proxy.host("ecr"), estate.acr_host)
        assert entry["tags"] and entry["bytes_moved"] >= 0
    assert sum(e["bytes_moved"] for e in ledger["images"]) == ledger["unique_bytes"]
    assert ledger["complete"] is True

    bad = subprocess.run(
        [CLI, "run", "images", "--env", ENV, "--strategy", "rsync"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--strategy 'rsync' is not a strategy" in bad.stderr
