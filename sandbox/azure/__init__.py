"""The sandbox's Azure: an ARM + Key Vault emulator the official SDKs talk to unchanged.

Start: `python -m sandbox.azure --host 127.0.0.1 --port P --state FILE [--public-url URL]
[--kubernetes-url URL] [--subscription S ...] [--tenant-id T]` (see __main__.py). It serves
plain HTTP; the sandbox's TLS proxy fronts it, because the SDKs refuse bearer tokens over http.

URL scheme, under the public URL (the proxy's, or the request's Host):
    ARM                 {public}/subscriptions/...   (base_url of every management client)
    Key Vault           {public}/kv/{vault}/         (= properties.vaultUri of the vault)
    secret ids          {public}/secrets/{name}/{version}
    OIDC issuer         {public}/oidc/{tenant}/{cluster-guid}/
    LRO status          {public}/subscriptions/{s}/providers/{ns}/locations/{loc}/operations/{id}
    LRO result          {public}/subscriptions/{s}/providers/{ns}/locations/{loc}/operationResults/{id}

    ACR token service   {loginServer}/oauth2/exchange, /oauth2/token  (each ACR front routes /oauth2/ here)
    AcrPull check       /_sandbox/authorize-pull                      (the Kubernetes emulator asks it)

Credentials: tokens.py (`SandboxCredential`, `mint_token`). Modules: app (HTTP), arm_routes
(ARM front door), auth (bearer checks), principals (client id -> principal), providers/ (one
module per resource provider, on the shared engine), lro (long-running operations), store (the
state file), rbac (built-in roles), keyvault (data plane), oidc (cluster issuers), acr/ (the ACR
data plane's Azure side: tokens, importImage, pull checks), testing (serve it over TLS in-process).
"""
