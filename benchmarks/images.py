"""Image transfer benchmark: this tool's `copy` against skopeo, the docker path and a lower bound.

One run, on this machine: two local Distribution registries (`docker-registry serve`, htpasswd,
plain HTTP on loopback, access logs on), a generated estate of repositories x tags whose base
layers are shared (deterministic gzip'd tars from `sandbox.oci`), and the same set of images
moved from the source to a fresh target by each contender:

    mmrv copy           this tool's copy strategy (observe both ends, plan, copy, verify every digest)
    skopeo-copy-each    `skopeo copy --preserve-digests` once per image (what a shell loop does)
    skopeo-sync         `skopeo sync --preserve-digests` of the whole set (one YAML source)
    docker-podman       pull / tag / push through podman's Docker API (docker SDK), one image at a time
    lower-bound         each unique blob once, a plain streaming GET -> PUT, same parallelism as the tool

Bytes read from the source are the blob bytes the source registry served (its access log).
The last lines are what `make bench` compares: `ratio <peer>: X.XX` is this tool's copy time
divided by the peer's (below 1 means faster), and `bytes moved / unique bytes: X.XX`.

    .venv/bin/python benchmarks/images.py [--quick] [--rounds N] [--parallelism N] [--auth htpasswd|none]
                                          [--skip-podman] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migration.clouds.copier import verify_image  # noqa: E402
from migration.clouds.docker_engine import DockerEngine  # noqa: E402
from migration.clouds.registry import BasicLogin, RegistryAuth, RegistryClient, RegistryOptions  # noqa: E402
from migration.images import Selection, SourceImage, plan_images  # noqa: E402
from migration.progress import Meter  # noqa: E402
from sandbox import process  # noqa: E402
from sandbox.oci import BuiltImage, ImageBuilder, ImageSpec, LayerSpec, RegistryPusher  # noqa: E402
from sandbox.registry import prepare_registry  # noqa: E402
from tasks.images import copy_plan, observe  # noqa: E402

MB = 1000 * 1000
USER, PASSWORD = "bench", "bench-password"


# --- the estate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    repositories: int
    tags: int
    base: int  # shared by every repository
    second_base: int  # shared by the first half of the repositories
    runtime: int  # one per repository
    deps: int  # one per repository and minor version (two tags share one)
    app: int  # one per image


FULL = Scale(repositories=5, tags=4, base=40 * MB, second_base=25 * MB, runtime=15 * MB, deps=6 * MB, app=3 * MB)
QUICK = Scale(repositories=3, tags=2, base=3 * MB, second_base=2 * MB, runtime=1 * MB, deps=MB // 2, app=MB // 4)


@dataclass
class Estate:
    images: dict[tuple[str, str], BuiltImage]  # (repository, tag) -> image

    @property
    def unique_bytes(self) -> int:
        return sum({b.digest: b.size for i in self.images.values() for b in i.blobs}.values())

    @property
    def logical_bytes(self) -> int:
        return sum(i.size for i in self.images.values())

    def by_repository(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for repo, tag in self.images:
            out.setdefault(repo, []).append(tag)
        return out


def build_estate(scale: Scale, workdir: Path) -> Estate:
    builder = ImageBuilder(2024, workdir)
    base = LayerSpec("bench-base", scale.base, "usr/lib/base.bin", "ADD base")
    second = LayerSpec("bench-base-2", scale.second_base, "usr/lib/extra.bin", "RUN apt-get install extra")
    images = {}
    for r in range(scale.repositories):
        repo = f"bench/service-{r}"
        runtime = LayerSpec(f"runtime-{r}", scale.runtime, "opt/runtime.bin", "RUN install runtime")
        for t in range(scale.tags):
            deps = LayerSpec(f"deps-{r}-{t // 2}", scale.deps, "app/deps.bin", "RUN install deps")
            app = LayerSpec(f"app-{r}-{t}", scale.app, "app/app.bin", "COPY . /app")
            layers = (
                (base, second, runtime, deps, app) if r < (scale.repositories + 1) // 2 else (base, runtime, deps, app)
            )
            images[(repo, f"1.{t}.0")] = builder.build(ImageSpec(layers=layers, labels={"repo": repo, "tag": str(t)}))
    return Estate(images)


# --- registries ---------------------------------------------------------------------------------


@dataclass
class Registry:
    name: str
    port: int
    record: process.ProcessRecord
    log: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        process.stop(self.record)

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def blob_bytes_served(self, since: int) -> int:
        """Bytes of blob GETs answered 200, from the access log (combined format) after offset `since`."""
        total = 0
        with self.log.open("rb") as handle:
            handle.seek(since)
            for raw in handle:
                line = raw.decode(errors="replace")
                if '"GET /v2/' not in line or "/blobs/sha256:" not in line or "response completed" in line:
                    continue
                tail = line.split('" ', 1)[1].split()
                if tail[0] == "200" and tail[1].isdigit():
                    total += int(tail[1])
        return total


AUTH = {"mode": "htpasswd"}  # --auth: htpasswd (bcrypt on every request, as the sandbox's ECR) or none


def start_registry(home: Path, name: str) -> Registry:
    home.mkdir(parents=True, exist_ok=True)
    (port,) = process.free_ports(1)
    argv = prepare_registry(home, name=name, port=port, user=USER, password=PASSWORD)
    if AUTH["mode"] == "none":
        config = yaml.safe_load((home / "config.yml").read_text())
        config.pop("auth", None)
        (home / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = home / "registry.log"
    record = process.spawn(argv, log_path=log, env={"PATH": "/usr/bin:/bin"}, cwd=home)
    deadline = time.monotonic() + 20
    while not process.port_accepts(port):
        if not process.is_running(record) or time.monotonic() > deadline:
            process.stop(record)
            raise SystemExit(f"registry {name} did not start: {process.tail(log, 10)}")
        time.sleep(0.05)
    return Registry(name, port, record, log)


def client(registry: Registry, parallelism: int) -> RegistryClient:
    return RegistryClient(
        registry.host,
        RegistryAuth(basic=BasicLogin(USER, PASSWORD)),
        RegistryOptions(plain_http=True, pool_size=2 * parallelism + 2),
    )


# --- the contenders -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: float
    bytes_read: int
    note: str = ""
    digests_kept: bool = True


def run_tool(estate: Estate, source: Registry, target: Registry, parallelism: int) -> str:
    """The copy strategy as the flow runs it at the registries: observe, plan, copy, verify."""
    by_digest: dict[tuple[str, str], list[str]] = {}
    for (repo, tag), image in estate.images.items():
        by_digest.setdefault((repo, image.digest), []).append(tag)
    selection = Selection(
        images=tuple(
            SourceImage(component="bench", repository=repo, digest=digest, tags=tuple(tags))
            for (repo, digest), tags in by_digest.items()
        )
    )
    with client(source, parallelism) as src, client(target, parallelism) as dst:
        observed = observe(src, dst, selection.images, parallelism)
        plan = plan_images("bench", selection, observed, source_registry=source.host, target_registry=target.host)
        meter = Meter("bench", plan.bytes_to_move)
        outcomes = copy_plan(src, dst, plan.to_transfer, parallelism=parallelism, meter=meter)
        failed = [o.error for o in outcomes if o.error]
        if failed:
            raise SystemExit(f"the tool's copy failed: {failed[0]}")
        for (repo, digest), tags in by_digest.items():
            if not verify_image(dst, repo, digest, tags).ok:
                raise SystemExit(f"the tool's copy did not verify: {repo}@{digest}")
    moved = sum(o.bytes_moved for o in outcomes)
    return f"{len(outcomes)} images, {moved / MB:.1f} MB moved, {sum(o.blobs_mounted for o in outcomes)} mounts"


def _skopeo(*args: str) -> None:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"skopeo {' '.join(args[:2])} failed: {done.stderr[-2000:]}")


def run_skopeo_each(estate: Estate, source: Registry, target: Registry) -> str:
    for repo, tag in estate.images:
        _skopeo(
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"--src-creds={USER}:{PASSWORD}",
            f"--dest-creds={USER}:{PASSWORD}",
            f"docker://{source.host}/{repo}:{tag}",
            f"docker://{target.host}/{repo}:{tag}",
        )
    return f"{len(estate.images)} invocations"


def run_skopeo_sync(estate: Estate, source: Registry, target: Registry, workdir: Path) -> str:
    config = workdir / "sync.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                source.host: {
                    "tls-verify": False,
                    "credentials": {"username": USER, "password": PASSWORD},
                    "images": estate.by_repository(),
                }
            }
        )
    )
    _skopeo(
        "sync",
        "--preserve-digests",
        "--src",
        "yaml",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        f"--dest-creds={USER}:{PASSWORD}",
        str(config),
        target.host,
    )
    return "one invocation"


@contextmanager
def podman_service(home: Path, insecure: list[str]) -> Iterator[str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{home}/graph"\nrunroot = "{home}/run"\n'
    )
    (home / "registries.conf").write_text(
        "unqualified-search-registries = []\n"
        + "".join(f'\n[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in insecure)
    )
    (home / "xdg").mkdir(exist_ok=True)
    sock = home / "podman.sock"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
        "XDG_RUNTIME_DIR": str(home / "xdg"),
        "TMPDIR": str(home),
    }
    record = process.spawn(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"], log_path=home / "podman.log", env=env, cwd=home
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if not process.is_running(record) or time.monotonic() > deadline:
                raise SystemExit(f"podman's API service did not start: {process.tail(home / 'podman.log', 5)}")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        process.stop(record)
        shutil.rmtree(home / "graph", ignore_errors=True)


def run_podman(estate: Estate, source: Registry, target: Registry, docker_host: str) -> tuple[str, bool]:
    engine = DockerEngine(docker_host)
    changed = 0
    try:
        with client(source, 1) as src, client(target, 1) as dst:
            for (repo, tag), image in estate.images.items():
                outcome = engine.transfer(src, dst, repo, image.digest, [tag])
                changed += outcome.target_digest != image.digest
    finally:
        engine.close()
    return f"{changed} of {len(estate.images)} digests rewritten by the daemon", changed == 0


def run_lower_bound(estate: Estate, source: Registry, target: Registry, parallelism: int) -> str:
    """Each unique blob exactly once: GET from the source, streamed into a PUT at the target. Nothing else."""
    first_home: dict[str, tuple[str, int]] = {}
    for (repo, _), image in estate.images.items():
        for blob in image.blobs:
            first_home.setdefault(blob.digest, (repo, blob.size))
    auth = (USER, PASSWORD)
    limits = httpx.Limits(max_connections=2 * parallelism + 2)
    with httpx.Client(auth=auth, timeout=300, limits=limits) as http:

        def move(item: tuple[str, tuple[str, int]]) -> None:
            digest, (repo, size) = item
            start = http.post(f"http://{target.host}/v2/{repo}/blobs/uploads/")
            location = httpx.URL(f"http://{target.host}").join(start.headers["location"])
            with http.stream("GET", f"http://{source.host}/v2/{repo}/blobs/{digest}") as got:
                put = http.put(
                    location.copy_merge_params({"digest": digest}),
                    content=got.iter_raw(),
                    headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
                )
            if put.status_code != 201:
                raise SystemExit(f"lower bound: PUT {digest} -> {put.status_code}")

        with ThreadPoolExecutor(parallelism) as pool:
            list(pool.map(move, first_home.items()))
    return f"{len(first_home)} blobs"


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Bench:
    workdir: Path
    source: Registry
    started: list[Registry] = field(default_factory=list)

    def fresh_target(self, name: str) -> Registry:
        registry = start_registry(self.workdir / name, name)
        self.started.append(registry)
        return registry

    def measure(self, name: str, run: Callable[[Registry], object]) -> Result:
        target = self.fresh_target(name)
        offset = self.source.log_size()
        time.sleep(0.2)  # the source's log catches up with the seeding
        offset = self.source.log_size()
        began = time.monotonic()
        answer = run(target)
        seconds = time.monotonic() - began
        time.sleep(0.3)  # the access log is written after the response
        note, kept = answer if isinstance(answer, tuple) else (str(answer), True)
        result = Result(name, seconds, self.source.blob_bytes_served(offset), note, kept)
        target.stop()
        shutil.rmtree(self.workdir / name / "data", ignore_errors=True)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a CI-sized estate (a few MB)")
    parser.add_argument("--parallelism", type=int, default=8, help="blob transfers at once (tool and lower bound)")
    parser.add_argument("--skip-podman", action="store_true", help="leave out the docker path (slow: vfs storage)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--rounds", type=int, help="rounds per contender, best kept (default 5; --quick 1)")
    parser.add_argument(
        "--auth",
        choices=("htpasswd", "none"),
        default="htpasswd",
        help="registry auth: htpasswd (bcrypt per request, like the sandbox's ECR; the default) or none",
    )
    args = parser.parse_args(argv)
    AUTH["mode"] = args.auth
    logging.basicConfig(level=logging.WARNING)
    for binary in ("docker-registry", "skopeo", "htpasswd") + (() if args.skip_podman else ("podman",)):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (make deps installs it)")
            return 1
    scale = QUICK if args.quick else FULL
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mmrv-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = start_registry(workdir / "source", "source")
    bench = Bench(workdir, source)
    try:
        began = time.monotonic()
        estate = build_estate(scale, workdir / "build")
        with RegistryPusher(f"http://{source.host}", USER, PASSWORD) as pusher:
            for (repo, tag), image in estate.images.items():
                pusher.push(repo, image, [tag])
        unique, logical = estate.unique_bytes, estate.logical_bytes
        print(
            f"estate: {len(estate.images)} images in {scale.repositories} repositories, "
            f"{unique / MB:.1f} MB unique, {logical / MB:.1f} MB logical (built and pushed in "
            f"{time.monotonic() - began:.1f} s); parallelism {args.parallelism}; registry auth {args.auth}"
        )
        contenders: list[tuple[str, Callable[[Registry], object]]] = [
            ("mmrv-copy", lambda t: run_tool(estate, source, t, args.parallelism)),
            ("skopeo-copy-each", lambda t: run_skopeo_each(estate, source, t)),
            ("skopeo-sync", lambda t: run_skopeo_sync(estate, source, t, workdir)),
        ]
        if not args.skip_podman:

            def podman(target: Registry) -> tuple[str, bool]:
                with podman_service(workdir / "podman", [source.host, target.host]) as docker_host:
                    return run_podman(estate, source, target, docker_host)

            contenders.append(("docker-podman", podman))
        contenders.append(("lower-bound", lambda t: run_lower_bound(estate, source, t, args.parallelism)))
        rounds = args.rounds or (1 if args.quick else 5)
        best: dict[str, Result] = {}
        times: dict[str, list[float]] = {}
        for round_number in range(rounds):
            # interleaved rounds, best of each: the machine's other load hits every contender alike
            for name, run in contenders:
                if name == "docker-podman" and round_number > 0:
                    continue  # tens of seconds per round, and never close: one round says enough
                result = bench.measure(name, run)
                times.setdefault(name, []).append(result.seconds)
                if name not in best or result.seconds < best[name].seconds:
                    best[name] = result
        results = [best[name] for name, _ in contenders]
        print(f"best of {rounds} interleaved round(s) per contender (docker-podman: one round); every round:")
        for name, _ in contenders:
            print(
                f"  {name:<18} "
                + " ".join(f"{t:.2f}" for t in times[name])
                + f"  (median {statistics.median(times[name]):.2f})"
            )
    finally:
        for registry in [*bench.started, source]:
            registry.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'contender':<18} {'seconds':>8} {'MB read from source':>20} {'MB/s':>7}  note")
    for res in results:
        rate = res.bytes_read / MB / res.seconds if res.seconds else 0.0
        print(f"{res.name:<18} {res.seconds:>8.2f} {res.bytes_read / MB:>20.1f} {rate:>7.1f}  {res.note}")
    tool = results[0]
    print()
    for res in results[1:]:
        print(f"ratio {res.name}: {tool.seconds / res.seconds:.2f}")
    if args.skip_podman:
        print("ratio docker-podman: skipped (--skip-podman)")
    print(f"bytes moved / unique bytes: {tool.bytes_read / unique:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
