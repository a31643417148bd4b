"""The export API (replication and repair): bearer tokens only, scope export:read.

``ROUTES`` is walked by the route matrix with session cookies, which never authenticate the API (401 for
everyone). ``TOKEN_ROUTES`` holds the same routes as each role's bearer token with ``export:read`` sees them;
tests/replication/test_export_matrix.py walks it against real repositories of acme's web-1 and globex's shop-1
(anonymous: no token).
"""

from __future__ import annotations

from typing import Any

from . import Case, everyone

HASH = "0" * 64


def _repo(w: dict[str, Any], vm: str = "acme_vm") -> str:
    return f"/api/v1/export/vm-{w[vm].id}"


def _revision(w: dict[str, Any], vm: str = "acme_vm") -> str:
    return f"{_repo(w, vm)}/revisions/{w[vm + '_revision']}"


def _chunk(w: dict[str, Any], vm: str = "acme_vm") -> str:
    return f"{_repo(w, vm)}/chunks/{w.get(vm + '_chunk', HASH)}"


def _batch(vm: str = "acme_vm") -> Any:
    """A batch request body: the VM's chunk and one that does not exist (marked missing, not an error)."""
    return lambda w: {"hashes": [w.get(vm + "_chunk", HASH), HASH]}


ROUTES = {
    "export.repositories": [Case("GET", lambda w: "/api/v1/export", everyone(401))],
    "export.repository_json": [Case("GET", lambda w: f"{_repo(w)}/repository.json", everyone(401))],
    "export.revisions": [Case("GET", lambda w: f"{_repo(w)}/revisions", everyone(401))],
    "export.manifest": [Case("GET", lambda w: f"{_repo(w)}/revisions/x", everyone(401))],
    "export.chunk": [Case("GET", lambda w: f"{_repo(w)}/chunks/{HASH}", everyone(401))],
    "export.chunk_batch": [Case("POST", lambda w: f"{_repo(w)}/chunks", everyone(401), data=_batch())],
}

#: acme's repository: its users and its account manager; globex's: its admin; operators both
ACME = everyone(200, anonymous=401, globex_admin=404)
GLOBEX = everyone(404, anonymous=401, globex_admin=200, operator=200)

TOKEN_ROUTES = {
    "export.repositories": [
        Case("GET", lambda w: "/api/v1/export", everyone(200, anonymous=401),
             absent={"acme_member": ("shop-1",), "acme_admin": ("shop-1",), "manager": ("shop-1",),
                     "globex_admin": ("web-1", "staging-api")}),
    ],
    "export.repository_json": [
        Case("GET", lambda w: f"{_repo(w)}/repository.json", ACME),
        Case("GET", lambda w: f"{_repo(w, 'globex_vm')}/repository.json", GLOBEX),
        Case("GET", lambda w: "/api/v1/export/vm-99999/repository.json", everyone(404, anonymous=401)),
        Case("GET", lambda w: "/api/v1/export/..%2Fetc/repository.json", everyone(404)),  # no such route
    ],
    "export.revisions": [
        Case("GET", lambda w: f"{_repo(w)}/revisions", ACME),
        Case("GET", lambda w: f"{_repo(w, 'globex_vm')}/revisions", GLOBEX),
        Case("GET", lambda w: f"{_repo(w)}/revisions?cursor=%%%", everyone(400, anonymous=401, globex_admin=404)),
    ],
    "export.manifest": [
        Case("GET", _revision, ACME),
        Case("GET", lambda w: _revision(w, "globex_vm"), GLOBEX),
        Case("GET", lambda w: f"{_repo(w)}/revisions/nope", everyone(404, anonymous=401)),
    ],
    "export.chunk": [
        Case("GET", _chunk, ACME),
        Case("GET", lambda w: _chunk(w, "globex_vm"), GLOBEX),
        Case("GET", lambda w: f"{_repo(w)}/chunks/{HASH}", everyone(404, anonymous=401)),
        Case("GET", lambda w: f"{_repo(w)}/chunks/..%2F..%2Frepository.json", everyone(404)),  # no such route
        Case("GET", lambda w: f"{_repo(w)}/chunks/..", everyone(404, anonymous=401)),
    ],
    "export.chunk_batch": [
        Case("POST", lambda w: f"{_repo(w)}/chunks", ACME, data=_batch()),
        Case("POST", lambda w: f"{_repo(w, 'globex_vm')}/chunks", GLOBEX, data=_batch("globex_vm")),
        Case("POST", lambda w: "/api/v1/export/vm-99999/chunks", everyone(404, anonymous=401), data=_batch()),
        Case("POST", lambda w: f"{_repo(w)}/chunks", everyone(422, anonymous=401),
             data=lambda w: {"hashes": ["../../repository.json"]}),
        Case("POST", lambda w: f"{_repo(w)}/chunks", everyone(422, anonymous=401), data=lambda w: {"hashes": []}),
    ],
}
