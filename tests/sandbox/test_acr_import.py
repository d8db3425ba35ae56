"""ACR's importImage in the sandbox: a real copy from the seeded ECR registry, through the official SDK.

One sandbox for the module (`sandbox.manager.up`); every import is `registries.begin_import_image`
with the ECR token as source credentials, as the tool's `import` strategy sends it. Digests are
checked by fetching the manifests at both ends through the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from sandbox.azure.tokens import OPERATOR_OID
from tests.sandbox.acr_scene import SPEC, Registry, Scene, access_lines, digest_of, running

pytestmark = pytest.mark.sandbox

STAGING, PRODUCTION = SPEC.environments[0], SPEC.environments[1]
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    with running(tmp_path_factory, "acr-import") as started:
        yield started


def import_image(scene: Scene, target: Registry, source: dict[str, Any], **parameters: Any) -> None:
    client = scene.arm(ContainerRegistryManagementClient, target.env.azure.subscription_id)
    body = {"source": source, "mode": "NoForce", **parameters}
    client.registries.begin_import_image(target.resource_group, target.name, body).result()


def from_ecr(scene: Scene, image: str, password: str | None = None) -> dict[str, Any]:
    user, real = scene.ecr_credentials
    return {
        "registryUri": scene.ecr,
        "sourceImage": image,
        "credentials": {"username": user, "password": password or real},
    }


def target_manifest(scene: Scene, registry: Registry, repository: str, reference: str) -> httpx.Response:
    token = scene.token_for(registry.login_server, OPERATOR_OID, f"repository:{repository}:pull")
    return scene.manifest(registry.login_server, repository, reference, token)


def source_manifest(scene: Scene, repository: str, reference: str) -> httpx.Response:
    answer = scene.manifest(scene.ecr, repository, reference)
    assert answer.status_code == 200, answer.text
    return answer


def test_import_by_tag_keeps_the_manifest_bytes(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    import_image(scene, staging, from_ecr(scene, "mmrv-backend:1.3.0"), targetTags=["mmrv-backend:1.3.0"])
    source = source_manifest(scene, "mmrv-backend", "1.3.0")
    target = target_manifest(scene, staging, "mmrv-backend", "1.3.0")
    assert target.status_code == 200
    assert target.content == source.content
    assert target.headers["docker-content-digest"] == source.headers["docker-content-digest"]


def test_import_by_digest_tags_and_keeps_untagged_copies(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    digest = source_manifest(scene, "mmrv-backend", "1.2.0").headers["docker-content-digest"]
    import_image(
        scene,
        staging,
        from_ecr(scene, f"mmrv-backend@{digest}"),
        targetTags=["mmrv-backend:1.2.0"],
        untaggedTargetRepositories=["archive/mmrv-backend"],
    )
    for repository, reference in (
        ("mmrv-backend", "1.2.0"),
        ("mmrv-backend", digest),
        ("archive/mmrv-backend", digest),
    ):
        answer = target_manifest(scene, staging, repository, reference)
        assert answer.status_code == 200 and answer.headers["docker-content-digest"] == digest
    assert target_manifest(scene, staging, "archive/mmrv-backend", "1.2.0").status_code == 404  # untagged


def test_a_second_image_mounts_the_layers_it_shares(scene: Scene) -> None:
    production = scene.registries[PRODUCTION.name]
    import_image(scene, production, from_ecr(scene, "mmrv-backend:1.4.0"), targetTags=["mmrv-backend:1.4.0"])
    web = json.loads(source_manifest(scene, "mmrv-web", "2.2.0").content)
    shared = web["layers"][0]["digest"]  # the Debian base layer both components are built on
    mark = len(scene.log(production.name))
    import_image(scene, production, from_ecr(scene, "mmrv-web:2.2.0"), targetTags=["mmrv-web:2.2.0"])
    lines = access_lines(scene.log(production.name)[mark:])
    mounts = [uri for method, uri, status in lines if method == "POST" and f"mount={shared}" in uri and status == 201]
    uploads = [uri for method, uri, status in lines if method == "PUT" and "/blobs/uploads/" in uri]
    assert mounts and "from=mmrv-backend" in mounts[0]
    assert not [uri for uri in uploads if shared in uri]  # mounted, not uploaded again
    assert len(uploads) == len(web["layers"])  # the other layers and the config were copied
    assert (
        target_manifest(scene, production, "mmrv-web", "2.2.0").content
        == source_manifest(scene, "mmrv-web", "2.2.0").content
    )


def test_no_force_refuses_a_tag_that_points_elsewhere(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    import_image(scene, staging, from_ecr(scene, "mmrv-web:2.0.0"), targetTags=["conflict:v1"])
    import_image(scene, staging, from_ecr(scene, "mmrv-web:2.0.0"), targetTags=["conflict:v1"])  # same digest: fine
    with pytest.raises(HttpResponseError) as refused:
        import_image(scene, staging, from_ecr(scene, "mmrv-web:2.1.0"), targetTags=["conflict:v1"])
    assert refused.value.status_code == 409 and refused.value.error.code == "Conflict"  # type: ignore[union-attr]
    assert "already exists in target registry" in refused.value.message
    import_image(scene, staging, from_ecr(scene, "mmrv-web:2.1.0"), targetTags=["conflict:v1"], mode="Force")
    moved = target_manifest(scene, staging, "conflict", "v1").headers["docker-content-digest"]
    assert moved == source_manifest(scene, "mmrv-web", "2.1.0").headers["docker-content-digest"]


def test_bad_source_credentials_fail_the_import(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    wrong = "not-the-ecr-token-9d1f"
    with pytest.raises(HttpResponseError) as failed:
        import_image(scene, staging, from_ecr(scene, "mmrv-backend:1.4.0", wrong), targetTags=["denied:v1"])
    assert "Unauthorized" in failed.value.message and wrong not in failed.value.message
    assert target_manifest(scene, staging, "denied", "v1").status_code == 404
    assert wrong not in scene.log("azure") and scene.ecr_credentials[1] not in scene.log("azure")


def test_a_missing_source_fails_the_import(scene: Scene) -> None:
    staging = scene.registries[STAGING.name]
    with pytest.raises(HttpResponseError) as failed:
        import_image(scene, staging, from_ecr(scene, "mmrv-backend:9.9.9"), targetTags=["mmrv-backend:9.9.9"])
    assert "NotFound" in failed.value.message and "MANIFEST_UNKNOWN" in failed.value.message


def test_an_index_is_imported_with_its_children_up_to_fifty(scene: Scene) -> None:
    production = scene.registries[PRODUCTION.name]
    children = [source_manifest(scene, "mmrv-backend", tag) for tag in ("1.2.0", "1.3.0")]
    entries = [
        {"mediaType": c.headers["content-type"], "digest": c.headers["docker-content-digest"], "size": len(c.content),
         "platform": {"architecture": arch, "os": "linux"}}
        for c, arch in zip(children, ("amd64", "arm64"), strict=True)
    ]  # fmt: skip
    small = _push_index(scene, "multi", entries)
    import_image(scene, production, from_ecr(scene, "mmrv-backend:multi"), targetTags=["mmrv-backend:multi"])
    assert target_manifest(scene, production, "mmrv-backend", "multi").headers["docker-content-digest"] == small
    for child in children:
        digest = child.headers["docker-content-digest"]
        assert target_manifest(scene, production, "mmrv-backend", digest).status_code == 200
    _push_index(scene, "too-many", entries * 25 + entries[:1])  # 51 manifests
    with pytest.raises(HttpResponseError) as failed:
        import_image(scene, production, from_ecr(scene, "mmrv-backend:too-many"), targetTags=["mmrv-backend:too-many"])
    assert "51 manifests" in failed.value.message and "at most 50" in failed.value.message


def test_import_from_another_acr_by_resource_id(scene: Scene) -> None:
    staging, production = scene.registries[STAGING.name], scene.registries[PRODUCTION.name]
    import_image(scene, staging, from_ecr(scene, "mmrv-web:2.0.0"), targetTags=["promote/web:2.0.0"])
    source = {"resourceId": staging.id, "sourceImage": "promote/web:2.0.0"}
    import_image(scene, production, source, targetTags=["promote/web:2.0.0"])
    expected = source_manifest(scene, "mmrv-web", "2.0.0").headers["docker-content-digest"]
    assert target_manifest(scene, production, "promote/web", "2.0.0").headers["docker-content-digest"] == expected


def _push_index(scene: Scene, tag: str, entries: list[dict[str, Any]]) -> str:
    """An OCI index into the ECR registry (directly, with ECR's basic credentials); its digest."""
    content = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
    with httpx.Client(trust_env=False, auth=httpx.BasicAuth(*scene.ecr_credentials)) as http:
        answer = http.put(
            f"{scene.direct_url('ecr-registry')}/v2/mmrv-backend/manifests/{tag}",
            content=content,
            headers={"Content-Type": INDEX},
        )
    assert answer.status_code == 201, answer.text
    return digest_of(content)
