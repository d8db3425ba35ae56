"""Where the sandbox's backends listen, as handed to the seeder.

The seeder talks to the backends directly (plain HTTP on loopback, not through the
fault proxy) so that seeding is deterministic whatever `--fault-rate` is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedEndpoints:
    aws_endpoint: str  # moto server, e.g. http://127.0.0.1:41001
    amplify_endpoint: str  # the Amplify emulator, e.g. http://127.0.0.1:41002
    ecr_registry_url: str  # the ECR registry (Distribution), e.g. http://127.0.0.1:41003
    ecr_registry_user: str  # "AWS", as ecr.get_authorization_token hands out
    ecr_registry_password: str  # "<account>-auth-token", what moto's token decodes to
    region: str
    account_id: str
