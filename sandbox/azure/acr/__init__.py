"""The ACR data plane's Azure side, served by the ARM emulator: what only Azure knows.

Each sandbox ACR is a Distribution registry (`docker-registry serve`) whose `auth.token`
points here, as ACR's registry front points at ACR's token service:

    POST {loginServer}/oauth2/exchange     Entra token -> ACR refresh token     (oauth.py)
    GET|POST {loginServer}/oauth2/token    refresh token -> access token (JWT)  (oauth.py)
    POST .../registries/{name}/importImage server-side copy, 202 + Location     (importer.py)
    POST /_sandbox/authorize-pull          the Kubernetes emulator's AcrPull check (access.py)

The fault proxy routes `/oauth2/` of every ACR front to this emulator and `/v2/` to the
registry, so a client sees one host, as with `<name>.azurecr.io`. Modules: signing (the
RS256 key and certificate Distribution trusts), access (who may pull/push where, from ARM's
role assignments), oauth (the token endpoints), endpoints (their HTTP routes), registry_client
(a small Distribution API client with the auth dance), importer (importImage's request),
copying (its copy, on a worker thread), runtime (the signer and the import workers).
"""
