"""The Kubernetes API of an AKS cluster through the official client, one small verb set for any kind.

Objects in and out are plain dicts (the API's JSON), so the ship planner compares like with
like. Paths come from `apiVersion` + `kind` (the kinds the ship phase writes are listed in
`PLURALS`; anything else is pluralised the way the API server does for them). Writes are
server-side apply with the field manager `mmrv-migrate`, the way `kubectl apply
--server-side` writes, so a rerun with the same manifests changes nothing.

Authentication: AKS clusters with Entra ID hand out a kubeconfig whose user runs
`kubelogin`; the tool asks its own Azure credential for a token for the AKS server
application instead (`AKS_SERVER_SCOPE`), the way kubelogin does, and sends it as the bearer.

Errors become TransientError (429, 5xx, connection problems) or PermanentError (4xx) naming
the object and the API server's reason; a 404 on a read is None, not an error.
"""

from __future__ import annotations

import base64
import builtins
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s

from migration.errors import NotFoundError, PermanentError, TransientError

FIELD_MANAGER = "mmrv-migrate"
AKS_SERVER_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"  # Entra app of every AKS API server

CLUSTER_SCOPED = {"Namespace", "Node", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
PLURALS = {
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "SecretProviderClass": "secretproviderclasses",
    "Endpoints": "endpoints",
}


def plural(kind: str) -> str:
    if kind in PLURALS:
        return PLURALS[kind]
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = base if kind in CLUSTER_SCOPED or not namespace else f"{base}/namespaces/{namespace}"
    path += f"/{plural(kind)}"
    return path + (f"/{name}" if name else "")


def describe(obj: dict[str, Any]) -> str:
    """`Kind namespace/name`, how a person finds it with kubectl."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}"


def _what(kind: str, namespace: str | None, name: str) -> str:
    """`Kind namespace/name`, or `Kind name` for a cluster-scoped object (never `Kind None/name`)."""
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


class ServerSettings:
    """Where the API server is and how to trust it, read from a kubeconfig (no credentials kept)."""

    def __init__(self, server: str, ca_pem: bytes | None) -> None:
        self.server = server.rstrip("/")
        self.ca_pem = ca_pem

    @classmethod
    def from_kubeconfig(cls, text: str) -> ServerSettings:
        try:
            config = yaml.safe_load(text) or {}
            current = config.get("current-context")
            contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
            cluster_name = contexts[current]["cluster"] if current in contexts else None
            clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
            cluster = clusters[cluster_name] if cluster_name else next(iter(clusters.values()))
        except (yaml.YAMLError, KeyError, StopIteration, TypeError, AttributeError) as exc:
            raise PermanentError("kubernetes", f"the cluster's kubeconfig is not usable: {exc}") from None
        ca = cluster.get("certificate-authority-data")
        return cls(cluster["server"], base64.b64decode(ca) if ca else None)


class KubeGateway:
    """One cluster's API: get/list/apply/patch/delete on dicts, with the tool's error kinds."""

    def __init__(
        self,
        settings: ServerSettings,
        token: str,
        *,
        extra_ca_bundle: str | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
    ) -> None:
        self.server = settings.server
        # Every verb is idempotent (reads, server-side apply of a whole manifest, a replace patch,
        # delete-if-present), so a 429/5xx or a dropped connection is retried here, with backoff
        # and Retry-After, like boto3 and the Azure SDKs do; what is left reaches the task's retries.
        self.attempts = max(1, attempts)
        self.backoff_seconds = max(0.0, backoff_seconds)
        configuration = k8s.Configuration()
        configuration.host = settings.server
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.retries = False  # retried in `_call`, where the error kinds are known
        if settings.ca_pem:
            self._ca_file = tempfile.NamedTemporaryFile(prefix="mmrv-kube-ca-", suffix=".pem")  # noqa: SIM115
            self._ca_file.write(settings.ca_pem)
            self._ca_file.flush()
            configuration.ssl_ca_cert = self._ca_file.name
        elif extra_ca_bundle:
            configuration.ssl_ca_cert = extra_ca_bundle
        self.api = k8s.ApiClient(configuration)

    def close(self) -> None:
        self.api.close()
        ca_file = getattr(self, "_ca_file", None)
        if ca_file is not None:
            ca_file.close()

    def __enter__(self) -> KubeGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- verbs ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, _post = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        for attempt in range(1, self.attempts + 1):
            retry_after: str | None = None
            try:
                with kube_errors(what):
                    response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
                    data = response.read()
                    if not 200 <= response.status <= 299:
                        retry_after = response.getheader("Retry-After")
                        raise k8s.ApiException(
                            status=response.status, reason=response.reason, body=data.decode("utf-8", "replace")
                        )
                    return json.loads(data) if data else {}
            except TransientError:
                if attempt == self.attempts:
                    raise
                time.sleep(_delay(retry_after, self.backoff_seconds * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # the loop returns or raises

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        what = _what(kind, namespace, name)
        try:
            return dict(self._call("GET", object_path(api_version, kind, namespace, name), what))
        except NotFoundError:
            return None

    def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page_query = [*query, ("limit", 500)] + ([("continue", token)] if token else [])
            out = self._call("GET", object_path(api_version, kind, namespace), f"{kind} list", query=page_query)
            items += [{"apiVersion": api_version, "kind": kind, **i} for i in out.get("items") or []]
            token = (out.get("metadata") or {}).get("continue")
            if not token:
                return items

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = True) -> dict[str, Any]:
        """Server-side apply as `mmrv-migrate`; `force` takes over fields another manager set (as the owner)."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])
        query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        out = self._call(
            "PATCH", path, describe(manifest), query=query, body=manifest, content_type="application/apply-patch+yaml"
        )
        return dict(out)

    def json_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, operations: builtins.list[dict[str, Any]]
    ) -> dict[str, Any]:
        path = object_path(api_version, kind, namespace, name)
        out = self._call(
            "PATCH",
            path,
            _what(kind, namespace, name),
            query=[("fieldManager", FIELD_MANAGER + "-rollback")],
            body=operations,
            content_type="application/json-patch+json",
        )
        return dict(out)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        try:
            self._call("DELETE", object_path(api_version, kind, namespace, name), _what(kind, namespace, name))
        except NotFoundError:
            pass


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Translate the client's errors into the tool's kinds, naming the object and the server's reason."""
    try:
        yield
    except k8s.ApiException as exc:
        status = exc.status or 0
        reason = _status_message(exc)
        text = f"{what}: {reason}"
        if status == 404:
            raise NotFoundError("kubernetes", text, status) from None
        if status in (408, 429) or status >= 500 or status == 0:
            raise TransientError("kubernetes", text, status or None) from None
        raise PermanentError("kubernetes", text, status) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError("kubernetes", f"{what}: connection problem: {type(exc).__name__}: {exc}") from None


def _delay(retry_after: str | None, backoff: float) -> float:
    """Retry-After (seconds) when the server sent one, else the backoff; never more than 10 s."""
    if retry_after:
        try:
            return min(10.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return min(10.0, backoff)


def _status_message(exc: k8s.ApiException) -> str:
    """The API server's `Status.message` when the body is one, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{exc.status} {body.get('reason') or exc.reason}: {body['message']}"[:600]
    return f"{exc.status} {exc.reason}"


def write_kubeconfig(text: str, token: str | None, path: Path) -> Path:
    """A kubeconfig for people (`kubectl`): the cluster's, with the exec user replaced by a token when given."""
    config = yaml.safe_load(text) or {}
    if token:
        for user in config.get("users") or []:
            user["user"] = {"token": token}
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # before the token is in it: write_text keeps an existing file's (maybe readable) mode
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
