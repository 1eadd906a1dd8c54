"""The registry client: Docker Registry HTTP API v2 / OCI distribution-spec v1.1.

    config.py   where credentials and per-registry CA certificates live (docker's layout)
    auth.py     the WWW-Authenticate challenges: Basic and Bearer (token per scope)
    client.py   one registry endpoint: TLS, retries, Range resume, narration of requests
    pull.py     manifests (every common type) and layers into the image store
    push.py     blobs (HEAD skip, cross-repository mount, chunked uploads), then the manifest

Everything here loads only for the registry verbs (pull, push, login, logout, search):
`minibox run` never imports it.
"""
