"""The sandbox's ACRs, and the wiring between the emulators that makes them one cloud.

One Distribution registry per ACR the spec names (backend name = the ACR name, data under
`<state>/<name>/data`), started with Distribution's token auth:

    realm   https://127.0.0.1:PUBLIC/oauth2/token    (the registry's own front; the proxy sends
                                                      /oauth2/ to the ARM emulator)
    service 127.0.0.1:PUBLIC                          (= the loginServer ARM reports)
    trust   <state>/acr-token/signing-cert.pem         (the ARM emulator signs with its key)

The ARM emulator is told each ACR's loginServer and direct URL (imports write there), where the
ECR registry really is (imports read there, past the fault proxy), and the signing key. The
Kubernetes emulator gets the ACR fronts mapped to the registries' direct URLs, a credential to
read them with (a refresh token of the nodes' reader principal, in a 0600 file, never argv),
the ARM emulator's pull check as its authorizer and its vaults for the Secrets Store CSI reads.
Emulator-to-emulator calls go to direct URLs, so injected faults only hit what a client sends.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from migration.spec import Spec
from sandbox.backend import Backend, Context
from sandbox.registry import prepare_token_registry

if TYPE_CHECKING:  # the ACR modules load with the ARM emulator's dependencies, only when used
    from sandbox.azure.acr.signing import SigningFiles

AZURE = "azure"
ECR = "ecr-registry"
KUBE_CREDENTIALS_FILE = "registry-credentials.json"
NODE_CREDENTIAL_SECONDS = 30 * 86_400  # outlives any sandbox session
ACR_PROFILE_KEY = "MMRV_ACR_REGISTRIES"


def acr_names(spec: Spec) -> list[str]:
    """The ACRs of the spec, lower-cased (ACR names are case-insensitive), in environment order."""
    return list(dict.fromkeys(env.azure.acr.name.lower() for env in spec.environments))


def _host(url: str) -> str:
    return url.partition("://")[2]


def _signing_files(ctx: Context) -> SigningFiles:
    from sandbox.azure.acr.signing import ensure_signing_files

    return ensure_signing_files(ctx.state_dir)


# --- the registries -----------------------------------------------------------------------------


def _acr_command(ctx: Context) -> list[str]:
    from sandbox.azure.acr.signing import ISSUER

    # a fresh, empty ACR per `up`, like the ARM registry resource it belongs to (ECR keeps its
    # seeded content: the seed is deterministic)
    shutil.rmtree(ctx.home / "data", ignore_errors=True)
    login_server = f"127.0.0.1:{ctx.public_port}"
    return prepare_token_registry(
        ctx.home,
        name=ctx.name,
        port=ctx.port,
        realm=f"https://{login_server}/oauth2/token",
        service=login_server,
        issuer=ISSUER,
        root_cert=_signing_files(ctx).cert,
    )


def _acr_profile(ctx: Context) -> Mapping[str, str]:
    """`MMRV_ACR_REGISTRIES=name=host:port,...` for scripts; the tool reads loginServer from ARM."""
    pairs = [f"{name}={_host(ctx.public_urls[name])}" for name in acr_names(ctx.spec) if name in ctx.public_urls]
    return {ACR_PROFILE_KEY: ",".join(pairs)}


def acr_backends(spec: Spec) -> Sequence[Backend]:
    return [
        Backend(
            name,
            _acr_command,
            health_path="/v2/",  # 401 with the Bearer challenge: up
            requires_module="sandbox.azure",  # its tokens come from there
            path_routes={"/oauth2/": AZURE},
            profile_values=_acr_profile,
        )
        for name in acr_names(spec)
    ]


# --- the ARM emulator ---------------------------------------------------------------------------


def azure_acr_args(ctx: Context) -> list[str]:
    """What the ARM emulator needs to serve the ACR data plane (see sandbox/azure/acr/)."""
    files = _signing_files(ctx)
    args = ["--acr-signing-key", str(files.key), "--acr-signing-cert", str(files.cert)]
    for name in acr_names(ctx.spec):
        if name in ctx.public_urls and name in ctx.direct_urls:
            args += ["--registry-host-map", f"{name}={_host(ctx.public_urls[name])}"]
            args += ["--registry-backend", f"{name}={ctx.direct_urls[name]}"]
    if ECR in ctx.public_urls and ECR in ctx.direct_urls:
        # the profile's MMRV_ECR_REGISTRY and ECR's own host name for the account both reach it
        aws = ctx.spec.aws
        for host in (_host(ctx.public_urls[ECR]), f"{aws.account_id}.dkr.ecr.{aws.region}.amazonaws.com"):
            args += ["--source-registry-map", f"{host}={ctx.direct_urls[ECR]}"]
    if ctx.ca_bundle:
        args += ["--ca-bundle", str(ctx.ca_bundle)]
    return args


# --- the Kubernetes emulator --------------------------------------------------------------------


def _write_private_json(path: Path, data: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def kube_wiring_args(ctx: Context) -> list[str]:
    """Registries, their read credential, the AcrPull authorizer and Key Vault, for the Kubernetes emulator."""
    args = ["--time-scale", str(ctx.kube_time_scale)]
    tenants = sorted({env.azure.tenant_id for env in ctx.spec.environments})
    if tenants:
        args += ["--tenant-id", tenants[0]]
    if ctx.ca_bundle:
        args += ["--ca-bundle", str(ctx.ca_bundle)]
    names = [n for n in acr_names(ctx.spec) if n in ctx.public_urls and n in ctx.direct_urls]
    if names and AZURE in ctx.direct_urls:
        from sandbox.azure.acr.access import NODE_READER_OID
        from sandbox.azure.acr.oauth import NULL_USER, mint_refresh_token
        from sandbox.azure.acr.signing import Signer

        signer = Signer(_signing_files(ctx))
        credentials = {}
        for name in names:
            login_server = _host(ctx.public_urls[name])
            args += ["--registry-map", f"{login_server}={ctx.direct_urls[name]}"]
            token = mint_refresh_token(signer, NODE_READER_OID, tenants[0], login_server, NODE_CREDENTIAL_SECONDS)
            credentials[login_server] = {"username": NULL_USER, "password": token}
        path = ctx.home / KUBE_CREDENTIALS_FILE
        _write_private_json(path, credentials)
        args += ["--registry-credentials", str(path)]
    if AZURE in ctx.direct_urls:
        arm = ctx.direct_urls[AZURE]
        args += ["--authorizer-url", f"{arm}/_sandbox/authorize-pull"]
        args += ["--keyvault-url-template", arm + "/kv/{vault}"]
    return args
