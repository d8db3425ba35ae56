"""`python -m sandbox.azure --host 127.0.0.1 --port P --state FILE [...]`: serve the emulator (plain HTTP).

In the sandbox a TLS proxy fronts it; `--public-url` is that proxy's base URL, which the
emulator writes into the URLs it hands out (vaultUri, operation URLs, OIDC issuers).
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

import uvicorn

from sandbox.azure.app import build_app
from sandbox.azure.config import DEFAULT_KUBERNETES_VERSIONS, EmulatorConfig, LroSettings
from sandbox.azure.tokens import OPERATOR_OID, SANDBOX_TENANT_ID
from sandbox.cli_args import key_value_pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.azure", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="JSON file the state is kept in")
    parser.add_argument("--public-url", help="base URL clients use, e.g. https://127.0.0.1:8443")
    parser.add_argument(
        "--kubernetes-url", help="API server for kubeconfigs; {cluster} {resource_group} {subscription}"
    )
    parser.add_argument("--kubernetes-ca", type=Path, help="PEM embedded as certificate-authority-data in kubeconfigs")
    parser.add_argument("--subscription", action="append", default=[], help="a known subscription (repeatable)")
    parser.add_argument("--tenant-id", default=SANDBOX_TENANT_ID)
    parser.add_argument("--operator-oid", action="append", default=[], help="a principal allowed all of ARM")
    parser.add_argument("--principal", action="append", default=[], help="another principal in the directory")
    parser.add_argument("--registry-host", default="{name}.azurecr.io", help="loginServer template, {name} filled in")
    parser.add_argument("--registry-host-map", action="append", default=[], metavar="NAME=HOST:PORT",
                        help="loginServer of registry NAME (repeatable); others keep --registry-host")  # fmt: skip
    parser.add_argument("--registry-backend", action="append", default=[], metavar="NAME=URL",
                        help="the Distribution registry serving ACR NAME (repeatable)")  # fmt: skip
    parser.add_argument("--source-registry-map", action="append", default=[], metavar="HOST=URL",
                        help="importImage reaches registryUri HOST at URL instead of https://HOST")  # fmt: skip
    parser.add_argument("--acr-signing-key", type=Path, help="PEM RSA key signing ACR tokens")
    parser.add_argument("--acr-signing-cert", type=Path, help="the key's certificate (the registries trust it)")
    parser.add_argument("--ca-bundle", type=Path, help="CA bundle for outgoing HTTPS (import sources)")
    parser.add_argument("--kubernetes-version", action="append", default=[], help="an offered version (repeatable)")
    parser.add_argument("--lro-polls", type=int, default=2, help="status polls until an operation succeeds")
    parser.add_argument("--lro-seconds", type=float, default=2.0, help="seconds until an operation succeeds anyway")
    parser.add_argument("--lro-retry-after", type=float, default=1.0, help="seconds between polls (fractions allowed)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _by_name(pairs: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in pairs.items()}  # registry and host names are case-insensitive


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        state_file=args.state,
        public_url=args.public_url,
        kubernetes_url=args.kubernetes_url,
        kubernetes_ca_file=args.kubernetes_ca,
        subscriptions=tuple(args.subscription),
        tenant_id=args.tenant_id,
        operator_oids=tuple(args.operator_oid) or (OPERATOR_OID,),
        known_principals=tuple(args.principal),
        registry_host=args.registry_host,
        registry_hosts=_by_name(key_value_pairs(args.registry_host_map, "--registry-host-map")),
        registry_backends=_by_name(key_value_pairs(args.registry_backend, "--registry-backend")),
        source_registries=_by_name(key_value_pairs(args.source_registry_map, "--source-registry-map")),
        acr_signing_key=args.acr_signing_key,
        acr_signing_cert=args.acr_signing_cert,
        ca_bundle=args.ca_bundle,
        kubernetes_versions=tuple(args.kubernetes_version) or DEFAULT_KUBERNETES_VERSIONS,
        lro=LroSettings(polls=args.lro_polls, seconds=args.lro_seconds, retry_after=args.lro_retry_after),
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket whose connections have TCP_NODELAY (accepted sockets inherit it).

    Measured on these machines: asyncio's own per-connection TCP_NODELAY does not take effect,
    and a response written in two parts (uvicorn writes head and body apart) then waits ~45 ms
    for a delayed ACK once TLS is involved.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every URL it requests at INFO (imports: upload URLs with their state); ours are enough
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = build_app(config_from_args(args))
    config = uvicorn.Config(
        app,
        # uvicorn's access log prints query strings; ours (app.py) prints method, path and status only
        access_log=False,
        log_level=args.log_level.lower(),
        # a bounded graceful shutdown: idle keep-alive connections must not hold a stop for long
        timeout_graceful_shutdown=2,
    )
    sock = listening_socket(args.host, args.port)
    logging.getLogger("sandbox.azure").info("listening on http://%s:%d", args.host, args.port)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
