"""Listing a registry: the catalog and the tags of each repository.

`GET /v2/_catalog?n=N` lists repository names, `GET /v2/NAME/tags/list?n=N` a repository's
tags; both are paginated with a `Link: <next URL>; rel="next"` header (RFC 8288), whose
URL carries `last=` (distribution-spec "Listing Tags", Docker Registry API "Catalog").
A private registry has no search index as Docker Hub does: `search` is the catalog,
filtered by name.
"""

from __future__ import annotations

import re

from minibox.errors import MiniboxError
from minibox.image.registry.client import Registry

PAGE = 100
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _pages(reg: Registry, path: str, key: str, scope: str, why: str) -> list[str]:
    items: list[str] = []
    url: str | None = f"{path}?n={PAGE}"
    while url:
        resp = reg.request("GET", url, scope=scope, why=why)
        if resp.status == 404 and key == "tags":
            resp.read()
            return []
        if resp.status != 200:
            raise MiniboxError(f"{reg.host}: GET {url.split('?')[0]}: {resp.error_text()}")
        link = resp.header("Link")
        items += resp.json().get(key) or []
        m = _NEXT.search(link or "")
        url = m.group(1) if m else None
    return items


def repositories(reg: Registry) -> list[str]:
    return _pages(reg, "/v2/_catalog", "repositories", "registry:catalog:*",
                  "list the registry's repositories")


def tags(reg: Registry, repo: str) -> list[str]:
    return _pages(reg, f"/v2/{repo}/tags/list", "tags", f"repository:{repo}:pull",
                  f"list the tags of {repo}")


def search(reg: Registry, term: str, want_tags: list[str], limit: int
           ) -> list[tuple[str, list[str]]]:
    rows = []
    for name in repositories(reg):
        if term and term not in name:
            continue
        names = sorted(tags(reg, name))
        if want_tags and not all(t in names for t in want_tags):
            continue
        rows.append((name, names))
        if len(rows) >= limit:
            break
    return rows
