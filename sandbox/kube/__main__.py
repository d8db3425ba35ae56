"""`python -m sandbox.kube`: serve the Kubernetes API emulator on plain HTTP.

    python -m sandbox.kube --host 127.0.0.1 --port 28443 --state .sandbox/kube.json \
        --cluster staging --cluster production --public-url https://127.0.0.1:28444 \
        --registry-map mmrvacr.azurecr.io=http://127.0.0.1:28001 \
        --registry-credentials .sandbox/acr-credentials.json \
        --authorizer-url http://127.0.0.1:28010/_sandbox/acr-pull \
        --keyvault-url-template 'https://127.0.0.1:28010/vaults/{vault}' --ca-bundle .sandbox/ca.pem \
        --time-scale 0.1

Secrets never go on the command line: registry credentials come from a JSON file
(`{"<login server>": {"username": "...", "password": "..."}}`) or from the environment
variable KUBE_EMULATOR_REGISTRY_CREDENTIALS holding the same JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from sandbox.cli_args import key_value_pairs
from sandbox.kube.app import create_app
from sandbox.kube.config import EmulatorConfig
from sandbox.kube.emulator import Emulator

CREDENTIALS_ENV = "KUBE_EMULATOR_REGISTRY_CREDENTIALS"


def _credentials(path: str | None) -> dict[str, tuple[str, str]]:
    raw = Path(path).read_text(encoding="utf-8") if path else os.environ.get(CREDENTIALS_ENV, "")
    if not raw:
        return {}
    data = json.loads(raw)
    return {host: (entry["username"], entry["password"]) for host, entry in data.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.kube", description="Kubernetes API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", help="state file (JSON, rewritten atomically); omit for in-memory")
    parser.add_argument("--public-url", help="how clients reach the emulator (e.g. the TLS fault proxy)")
    parser.add_argument("--cluster", action="append", default=[], help="a cluster to serve (repeat); default: default")
    parser.add_argument("--default-cluster", help="the cluster also served at / (default: the only one)")
    parser.add_argument("--any-cluster", action="store_true", help="serve any /clusters/<name> on first use")
    parser.add_argument("--time-scale", type=float, default=1.0, help="real seconds per emulated second")
    parser.add_argument("--tick", type=float, default=0.05, help="real seconds between controller passes")
    parser.add_argument("--registry-map", action="append", default=[], metavar="HOST=URL",
                        help="registry host in image references -> base URL of the registry serving it")  # fmt: skip
    parser.add_argument(
        "--registry-credentials", metavar="FILE", help=f"JSON credentials per host (or ${CREDENTIALS_ENV})"
    )
    parser.add_argument("--allow-unmapped-images", action="store_true",
                        help="treat images from registries not in --registry-map as present")  # fmt: skip
    parser.add_argument("--authorizer-url", help="AcrPull check endpoint (POST); omit to allow every pull")
    parser.add_argument("--keyvault-url-template", help="vault URL with {vault}; omit for placeholder secrets")
    parser.add_argument("--ca-bundle", help="CA bundle for outgoing HTTPS (registry, authorizer, Key Vault)")
    parser.add_argument("--tenant-id", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--token-audience", help="insist on this audience in bearer tokens")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM); default plain HTTP")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        state_file=Path(args.state) if args.state else None,
        public_url=args.public_url,
        clusters=tuple(args.cluster) or ("default",),
        default_cluster=args.default_cluster,
        any_cluster=args.any_cluster,
        time_scale=args.time_scale,
        tick=args.tick,
        registry_map=key_value_pairs(args.registry_map, "--registry-map"),
        registry_credentials=_credentials(args.registry_credentials),
        allow_unmapped_images=args.allow_unmapped_images,
        authorizer_url=args.authorizer_url,
        keyvault_url_template=args.keyvault_url_template,
        ca_bundle=args.ca_bundle,
        tenant_id=args.tenant_id,
        token_audience=args.token_audience,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    emulator = Emulator(config_from_args(args))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(emulator),
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # watches are long-lived streams; don't let shutdown wait for them
            timeout_graceful_shutdown=2,
            ssl_certfile=args.tls_cert,
            ssl_keyfile=args.tls_key,
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
