"""AWS stand-ins for the flow tests: a moto server and an Amplify server, seeded once per session.

All the seeding lives in the `aws_estate` fixture; when the sandbox lands it can become
`sandbox.manager.up(...)` with the same SeededEstate-style facts for the assertions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migration.spec import load_spec
from tests.aws_estate import AmplifyServer, MotoServer, SeededEstate, seed_estate
from tests.conftest import SPEC_PATH


@pytest.fixture(scope="session")
def aws_estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededEstate]:
    """MMRV's estate (both environments of deployments/mmrv.yaml) on real local servers.

    This process's environment points boto3 at them for the whole session.
    """
    moto = MotoServer(tmp_path_factory.mktemp("moto"))
    amplify = AmplifyServer()
    try:
        estate = seed_estate(load_spec(SPEC_PATH), moto.url, amplify.url)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in estate.client_env().items():
                mp.setenv(key, value)
            # small, quick retries in tests; the flows read these when they run
            mp.setenv("MMRV_AWS_MAX_ATTEMPTS", "2")
            mp.setenv("MMRV_TASK_RETRIES", "1")
            mp.setenv("MMRV_RETRY_BASE_SECONDS", "0.1")
            yield estate
    finally:
        amplify.stop()
        moto.stop()
