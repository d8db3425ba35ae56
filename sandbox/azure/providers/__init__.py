"""The ARM resource providers. Importing this package registers every resource kind and route."""

from sandbox.azure.providers import (  # noqa: F401 - imported for their registrations
    authorization,
    clusters,
    identities,
    network,
    registries,
    resources,
    vaults,
)
