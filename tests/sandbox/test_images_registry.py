"""The registry client and the copy engine against real Distribution registries.

Two `docker-registry serve` instances per test (htpasswd, or ACR-style token auth), images
pushed over the registry API, and the checks read the registries' own access logs: digests
kept (image and index), shared layers mounted not re-sent, a copy killed with SIGKILL and
rerun moving only the rest, a corrupted source blob never committed, the fault proxy's
429/503/resets/lost responses survived, the Docker Engine path through podman, and the
`images copy` command's exit codes.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from migration.clouds.copier import CopyJob, ImageCopier, verify_image
from migration.clouds.docker_engine import DockerEngine
from migration.clouds.registry import (
    BasicLogin,
    CorruptBlob,
    RegistryAuth,
    RegistryClient,
    RegistryOptions,
    sha256_digest,
)
from migration.errors import PermanentError
from migration.images import OCI_INDEX
from sandbox.oci import (
    CONFIG_V1,
    LAYER_GZIP,
    MANIFEST_V2,
    Blob,
    BuiltImage,
    ImageBuilder,
    ImageSpec,
    LayerSpec,
    RegistryPusher,
)
from tests.registries import (
    AcrTokenServer,
    CorruptSource,
    RunningRegistry,
    blob_bytes_served,
    blob_uploads,
    mounts,
    start_fault_proxy,
    start_podman,
    start_registry,
)

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "mmrv-migrate")
MB = 1024 * 1024


# --- images made of random bytes (registries do not look inside blobs) -------------------------


class Blobs:
    """Random blobs on disk, each made once per name (so images can share them)."""

    def __init__(self, workdir: Path, seed: int = 5) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.made: dict[str, Blob] = {}

    def blob(self, name: str, size: int, media_type: str = LAYER_GZIP) -> Blob:
        if name not in self.made:
            rng = random.Random(f"{self.seed}/{name}")
            path = self.workdir / name
            with path.open("wb") as out:
                left = size
                while left:
                    piece = rng.randbytes(min(left, MB))
                    out.write(piece)
                    left -= len(piece)
            data_digest = _file_digest(path)
            self.made[name] = Blob(data_digest, size, media_type, path)
        return self.made[name]

    def image(self, name: str, layers: list[tuple[str, int]]) -> BuiltImage:
        config_path = self.workdir / f"{name}.config"
        config_path.write_bytes(json.dumps({"architecture": "amd64", "os": "linux", "name": name}).encode())
        config = Blob(_file_digest(config_path), config_path.stat().st_size, CONFIG_V1, config_path)
        blobs = tuple(self.blob(n, s) for n, s in layers)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "size": config.size, "digest": config.digest},
                "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in blobs],
            },
            indent=3,
        ).encode()
        return BuiltImage(manifest, sha256_digest(manifest), config, blobs)


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def push(registry: RunningRegistry, repository: str, image: BuiltImage, tags: list[str]) -> None:
    with RegistryPusher(registry.url, registry.user, registry.password) as pusher:
        pusher.push(repository, image, tags)


def client(registry: RunningRegistry, host: str | None = None, **options: object) -> RegistryClient:
    opts = RegistryOptions(plain_http=host is None, max_attempts=6, backoff_seconds=0.05, **options)  # type: ignore[arg-type]
    auth = RegistryAuth(basic=BasicLogin(registry.user, registry.password))
    return RegistryClient(host or registry.host, auth, opts)


@dataclass
class Pair:
    source: RunningRegistry
    target: RunningRegistry


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    source = start_registry(tmp_path / "ecr", "ecr", password="ecr-secret")
    try:
        target = start_registry(tmp_path / "acr", "acr", password="acr-secret")
    except BaseException:
        source.stop()
        raise
    yield Pair(source, target)
    target.stop()
    source.stop()


@pytest.fixture()
def blobs(tmp_path: Path) -> Blobs:
    return Blobs(tmp_path / "blobs")


# --- digests, indexes, mounts ---------------------------------------------------------------------


def test_copy_keeps_digests_and_mounts_shared_layers(pair: Pair, blobs: Blobs) -> None:
    base = ("base", 3 * MB)
    images = {
        ("app-a", "1.0"): blobs.image("a1", [base, ("a-deps", MB), ("a1", 200_000)]),
        ("app-a", "1.1"): blobs.image("a2", [base, ("a-deps", MB), ("a2", 210_000)]),
        ("app-b", "2.0"): blobs.image("b1", [base, ("b1", 300_000)]),
    }
    for (repo, tag), image in images.items():
        push(pair.source, repo, image, [tag])
    unique = sum(b.size for b in blobs.made.values()) + sum(i.config.size for i in images.values())
    source_mark, target_mark = pair.source.mark(), pair.target.mark()

    with client(pair.source) as source, client(pair.target) as target:
        outcomes = ImageCopier(source, target, parallelism=4).copy(
            [CopyJob(repo, image.digest, (tag,)) for (repo, tag), image in images.items()]
        )
        assert [o.error for o in outcomes] == [None, None, None]
        for (repo, tag), image in images.items():
            assert verify_image(target, repo, image.digest, [tag]).ok
            manifest = target.get_manifest(repo, tag)
            assert manifest.data == image.manifest  # the exact bytes, so the same digest

    served = pair.source.access_since(source_mark)
    written = pair.target.access_since(target_mark)
    # every unique blob read from the source once, sent once; the base layer mounted into app-b
    assert blob_bytes_served(served) == unique
    assert sum(o.bytes_moved for o in outcomes) == unique
    assert len(blob_uploads(written)) == len(blobs.made) + len(images)
    (mount,) = mounts(written)
    assert mount.query["mount"] == [blobs.made["base"].digest]  # into whichever repository did not upload it
    assert mount.path in ("/v2/app-a/blobs/uploads/", "/v2/app-b/blobs/uploads/")

    # a rerun finds everything there: no blob read, none written
    source_mark, target_mark = pair.source.mark(), pair.target.mark()
    with client(pair.source) as source, client(pair.target) as target:
        again = ImageCopier(source, target, parallelism=4).copy(
            [CopyJob(repo, image.digest, (tag,)) for (repo, tag), image in images.items()]
        )
    assert [o.bytes_moved for o in again] == [0, 0, 0]
    assert blob_bytes_served(pair.source.access_since(source_mark)) == 0
    assert blob_uploads(pair.target.access_since(target_mark)) == []


def test_an_index_and_its_children_keep_their_digests(pair: Pair, blobs: Blobs) -> None:
    amd = blobs.image("amd64", [("base", MB), ("amd", 100_000)])
    arm = blobs.image("arm64", [("base-arm", MB), ("arm", 100_000)])
    for image in (amd, arm):
        push(pair.source, "multi", image, [image.digest])  # children go up by digest, untagged
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST_V2,
                    "digest": amd.digest,
                    "size": len(amd.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
                {
                    "mediaType": MANIFEST_V2,
                    "digest": arm.digest,
                    "size": len(arm.manifest),
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
            ],
        }
    ).encode()
    with httpx.Client(auth=(pair.source.user, pair.source.password)) as raw:
        put = raw.put(f"{pair.source.url}/v2/multi/manifests/3.0", content=index, headers={"Content-Type": OCI_INDEX})
        assert put.status_code == 201, put.text

    with client(pair.source) as source, client(pair.target) as target:
        digest = source.manifest_digest("multi", "3.0")
        assert digest == sha256_digest(index)
        outcome = ImageCopier(source, target).copy_one(CopyJob("multi", digest, ("3.0",)))
        assert outcome.target_digest == digest
        assert verify_image(target, "multi", digest, ["3.0"]).ok
        copied = target.get_manifest("multi", "3.0")
        assert copied.data == index and copied.media_type == OCI_INDEX
        for child in (amd, arm):
            assert target.get_manifest("multi", child.digest).data == child.manifest
            for blob in child.blobs:
                assert target.blob_exists("multi", blob.digest)


def test_chunked_uploads_keep_digests(pair: Pair, blobs: Blobs) -> None:
    image = blobs.image("big", [("big", 5 * MB + 123), ("small", 1000)])
    push(pair.source, "chunky", image, ["1"])
    mark = pair.target.mark()
    with client(pair.source) as source, client(pair.target, chunk_threshold=MB, chunk_size=2 * MB) as target:
        ImageCopier(source, target).copy_one(CopyJob("chunky", image.digest, ("1",)))
        assert verify_image(target, "chunky", image.digest, ["1"]).ok
    patches = [a for a in pair.target.access_since(mark) if a.method == "PATCH"]
    assert len(patches) == 3  # 2 + 2 + 1.x MiB of the big layer; the small ones go up whole


# --- a source that lies ------------------------------------------------------------------------


def test_a_corrupted_blob_fails_the_image_and_is_never_committed(pair: Pair, blobs: Blobs) -> None:
    image = blobs.image("victim", [("fine", 300_000), ("bad", 2 * MB)])
    files = {b.digest: b.path.read_bytes() for b in image.blobs}
    liar = CorruptSource(image.manifest, MANIFEST_V2, files, corrupt=blobs.made["bad"].digest)
    mark = pair.target.mark()
    try:
        source = RegistryClient(liar.host, options=RegistryOptions(plain_http=True, max_attempts=2))
        with source, client(pair.target) as target:
            (outcome,) = ImageCopier(source, target).copy([CopyJob("victim", image.digest, ("1",))])
            assert (
                outcome.error is not None and "hash to" in outcome.error and blobs.made["bad"].digest in outcome.error
            )
            assert not target.blob_exists("victim", blobs.made["bad"].digest)
            assert target.manifest_digest("victim", image.digest) is None
            assert target.manifest_digest("victim", "1") is None
            with pytest.raises(CorruptBlob):
                ImageCopier(source, target).copy_one(CopyJob("victim", image.digest, ("1",)))
    finally:
        liar.stop()
    committed = {a.query.get("digest", [""])[0] for a in blob_uploads(pair.target.access_since(mark))}
    assert blobs.made["bad"].digest not in committed


# --- faults -------------------------------------------------------------------------------------


def test_transfers_survive_the_fault_proxy(pair: Pair, blobs: Blobs, tmp_path: Path) -> None:
    images = {
        (f"svc-{n}", "1"): blobs.image(f"svc{n}", [("shared", 2 * MB), (f"own{n}", 400_000 + n)]) for n in range(4)
    }
    for (repo, tag), image in images.items():
        push(pair.source, repo, image, [tag])
    proxy = start_fault_proxy(
        tmp_path / "proxy", {"ecr": pair.source.port, "acr": pair.target.port}, fault_rate=0.25, seed=3
    )
    try:
        opts = {"ca_bundle": str(proxy.tls.ca)}
        with (
            client(pair.source, proxy.host("ecr"), **opts) as source,
            client(pair.target, proxy.host("acr"), **opts) as target,
        ):
            outcomes = ImageCopier(source, target, parallelism=3).copy(
                [CopyJob(repo, image.digest, (tag,)) for (repo, tag), image in images.items()]
            )
            assert [o.error for o in outcomes] == [None] * 4
            for (repo, tag), image in images.items():
                assert verify_image(target, repo, image.digest, [tag]).ok
        faults = [proxy.stats(route)["faults"] for route in ("ecr", "acr")]
    finally:
        proxy.stop()
    injected = {kind: sum(f[kind] for f in faults) for kind in ("throttle", "unavailable", "reset", "lost")}
    print(f"faults injected: {injected}")
    assert sum(injected.values()) >= 8 and all(injected.values()), injected


# --- ACR-style token authentication ----------------------------------------------------------------


def test_acr_token_exchange_against_a_token_auth_registry(tmp_path: Path, blobs: Blobs) -> None:
    tokens = AcrTokenServer(tmp_path / "token", accepted_aad_tokens={"entra-token"}, tenant="tenant-1")
    source = start_registry(tmp_path / "ecr", "ecr")
    target = start_registry(tmp_path / "acr", "acr", token=tokens)
    try:
        image = blobs.image("app", [("layer", MB)])
        push(source, "app", image, ["1.0"])
        opts = RegistryOptions(plain_http=True, max_attempts=2, backoff_seconds=0.05)
        acr = RegistryAuth(aad_token=lambda: "entra-token", tenant="tenant-1")
        with client(source) as src, RegistryClient(target.host, acr, opts) as dst:
            ImageCopier(src, dst).copy_one(CopyJob("app", image.digest, ("1.0",)))
            assert verify_image(dst, "app", image.digest, ["1.0"]).ok
            user, refresh = dst.registry_password("app")
            assert user == "00000000-0000-0000-0000-000000000000" and refresh
        exchanges = [c for c in tokens.calls if c[0] == "POST /oauth2/exchange"]
        assert len(exchanges) == 1 and exchanges[0][1]["tenant"] == ["tenant-1"]
        assert exchanges[0][1]["service"] == [target.host]
        scopes = {s for call, form in tokens.calls if call == "POST /oauth2/token" for s in form.get("scope", [])}
        assert "repository:app:pull,push" in scopes

        refused = RegistryAuth(aad_token=lambda: "someone-else", tenant="tenant-1")
        with RegistryClient(target.host, refused, opts) as dst, pytest.raises(PermanentError) as info:
            dst.manifest_digest("app", "1.0")
        assert f"registry {target.host}" in str(info.value) and "Entra token was refused" in str(info.value)
    finally:
        target.stop()
        source.stop()
        tokens.stop()


def test_refused_basic_credentials_name_the_registry(pair: Pair) -> None:
    bad = RegistryClient(
        pair.target.host, RegistryAuth(basic=BasicLogin("AWS", "wrong")), RegistryOptions(plain_http=True)
    )
    with bad, pytest.raises(PermanentError) as info:
        bad.ping()
    assert str(info.value) == f"registry {pair.target.host}: GET /v2/: credentials refused for user AWS (HTTP 401)"


# --- the Docker Engine path ----------------------------------------------------------------------


def test_docker_path_through_podman_reports_the_rewritten_digest(pair: Pair, tmp_path: Path) -> None:
    podman = start_podman(tmp_path / "podman", [pair.source.host, pair.target.host])
    try:
        # a daemon unpacks layers: real gzip'd tars this time
        builder = ImageBuilder(3, tmp_path / "oci")
        image = builder.build(
            ImageSpec(
                layers=(LayerSpec("d-base", MB, "base.bin", "base"), LayerSpec("d-app", 100_000, "app.bin", "app")),
                labels={"test": "docker"},
            )
        )
        push(pair.source, "app", image, ["1.0"])
        engine = DockerEngine(podman.docker_host)
        with client(pair.source) as source, client(pair.target) as target:
            outcome = engine.transfer(source, target, "app", image.digest, ["1.0", "stable"])
            assert outcome.error is None
            assert outcome.target_digest is not None and outcome.target_digest.startswith("sha256:")
            # podman re-compresses the layers: the image arrives under another digest, and we say so
            assert outcome.target_digest != image.digest and "different digest" in outcome.note
            assert verify_image(target, "app", outcome.target_digest, ["1.0", "stable"]).ok
        engine.close()
    finally:
        podman.stop()


# --- the command: images copy ------------------------------------------------------------------


def auth_file(path: Path, *registries: tuple[str, RunningRegistry]) -> Path:
    auths = {host: {"auth": base64.b64encode(f"{r.user}:{r.password}".encode()).decode()} for host, r in registries}
    path.write_text(json.dumps({"auths": auths}))
    return path


def cli_env(tmp_path: Path, pair: Pair, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MMRV_"))}
    env.update(
        COLUMNS="300",
        REGISTRY_AUTH_FILE=str(
            auth_file(tmp_path / "auth.json", (pair.source.host, pair.source), (pair.target.host, pair.target))
        ),
        MMRV_PLAIN_HTTP_REGISTRIES=f"{pair.source.host},{pair.target.host}",
        MMRV_REGISTRY_MAX_ATTEMPTS="2",
        MMRV_REGISTRY_BACKOFF_SECONDS="0.05",
    )
    env.update(extra)
    return env


def mmrv(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_images_copy_command_and_its_exit_codes(pair: Pair, blobs: Blobs, tmp_path: Path) -> None:
    image = blobs.image("cli", [("cli-layer", MB)])
    push(pair.source, "team/app", image, ["1.0"])
    env = cli_env(tmp_path, pair)
    src, dst = pair.source.host, pair.target.host
    out = tmp_path / "ledger.json"

    done = mmrv("images", "copy", f"{src}/team/app:1.0", f"{dst}/team/app", "--json", str(out), env=env)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(out.read_text())["images"]
    assert entry["source"] == f"{src}/team/app@{image.digest}" and entry["target"] == f"{dst}/team/app@{image.digest}"
    assert entry["tags"] == ["1.0"] and entry["bytes_moved"] == MB + image.config.size
    assert "digest verified" in done.stdout

    cases = [
        ((f"{src}/team/App:1.0", f"{dst}/x"), 2, f"image reference '{src}/team/App:1.0'"),
        (("team/app:1.0", f"{dst}/x"), 2, "image reference 'team/app:1.0': 'team' is not a registry host"),
        ((f"{src}/team/app:9.9", f"{dst}/x"), 2, f"{src}/team/app:9.9: no such tag or repository in {src}"),
        ((f"{src}/nothere:1.0", f"{dst}/x"), 2, f"{src}/nothere:1.0: no such tag or repository"),
        ((f"{src}/team/app:1.0", "127.0.0.1:1/x"), 1, "registry 127.0.0.1:1"),
    ]
    for args, code, says in cases:
        done = mmrv("images", "copy", *args, env=env)
        assert done.returncode == code, (args, done.stderr)
        assert says in done.stderr, (args, done.stderr)

    refused = cli_env(tmp_path, pair)
    auth_file(tmp_path / "bad.json", (src, RunningRegistry("x", 0, pair.source.record, Path(), Path(), "AWS", "nope")))
    refused["REGISTRY_AUTH_FILE"] = str(tmp_path / "bad.json")
    done = mmrv("images", "copy", f"{src}/team/app:1.0", f"{dst}/team/app", env=refused)
    assert done.returncode == 1 and f"registry {src}" in done.stderr and "credentials refused" in done.stderr


def test_a_copy_killed_mid_transfer_resumes_moving_only_the_rest(pair: Pair, blobs: Blobs, tmp_path: Path) -> None:
    layers = [(f"layer{n}", 12 * MB) for n in range(8)]
    image = blobs.image("resume", layers)
    push(pair.source, "big", image, ["1"])
    env = cli_env(tmp_path, pair)
    args = ["images", "copy", f"{pair.source.host}/big:1", f"{pair.target.host}/big", "--parallel", "1"]
    target_mark, source_mark = pair.target.mark(), pair.source.mark()
    copy = subprocess.Popen([CLI, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len([u for u in blob_uploads(pair.target.access_since(target_mark)) if u.query.get("digest")]) < 2:
        assert copy.poll() is None, "the copy finished before it could be killed: make the image bigger"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    copy.send_signal(signal.SIGKILL)
    copy.wait(timeout=10)

    with client(pair.target) as target:
        present = [b for b in image.blobs if target.blob_exists("big", b.digest)]
        assert 2 <= len(present) < len(image.blobs)
        assert target.manifest_digest("big", "1") is None
    rest = sum(b.size for b in image.blobs if b not in present)  # image.blobs: the layers and the config
    first_read = blob_bytes_served(pair.source.access_since(source_mark))

    source_mark = pair.source.mark()
    out = tmp_path / "rerun.json"
    done = mmrv(*args, "--json", str(out), env=env)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(out.read_text())["images"]
    assert entry["bytes_moved"] == rest
    assert entry["blobs"]["present"] == len(present)
    assert blob_bytes_served(pair.source.access_since(source_mark)) == rest
    print(f"killed after {first_read} bytes read; the rerun moved {rest} of {image.size} bytes")
