"""A model of how dockerd (Go's net/http, net/url and gorilla/mux, Docker 20.10) routes a
request target, written from their documented behaviour, to check the guard against:
whatever the guard forwards must reach exactly the endpoint its rule names.

- net/http takes the request-target; net/url percent-decodes it into URL.Path.
- mux matches the decoded path; a path that `path.Clean` would change gets a redirect,
  never a handler.
- Every route exists with and without a `/v{version:[0-9.]+}` prefix.
- Container and exec names are `{name:.*}`: they may contain slashes.
- url.ParseQuery refuses semicolons (Go >= 1.17) and decodes `+` as a space.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

# (method, path pattern after the version prefix) -> endpoint name, for the routes that
# matter here plus enough of the rest that a mis-route is noticed.
_ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"/_ping", "ping"),
    ("HEAD", r"/_ping", "ping"),
    ("GET", r"/version", "version"),
    ("GET", r"/info", "info"),
    ("GET", r"/events", "events"),
    ("GET", r"/containers/json", "container-list"),
    ("POST", r"/containers/create", "container-create"),
    ("POST", r"/containers/prune", "container-prune"),
    ("GET", r"/containers/(?P<name>.*)/json", "container-inspect"),
    ("GET", r"/containers/(?P<name>.*)/logs", "container-logs"),
    ("GET", r"/containers/(?P<name>.*)/stats", "container-stats"),
    ("GET", r"/containers/(?P<name>.*)/archive", "container-archive"),
    ("GET", r"/containers/(?P<name>.*)/export", "container-export"),
    ("POST", r"/containers/(?P<name>.*)/start", "container-start"),
    ("POST", r"/containers/(?P<name>.*)/stop", "container-stop"),
    ("POST", r"/containers/(?P<name>.*)/restart", "container-restart"),
    ("POST", r"/containers/(?P<name>.*)/kill", "container-kill"),
    ("POST", r"/containers/(?P<name>.*)/exec", "exec-create"),
    ("POST", r"/containers/(?P<name>.*)/attach", "container-attach"),
    ("POST", r"/containers/(?P<name>.*)/update", "container-update"),
    ("DELETE", r"/containers/(?P<name>.*)", "container-delete"),
    ("POST", r"/exec/(?P<name>.*)/start", "exec-start"),
    ("POST", r"/exec/(?P<name>.*)/resize", "exec-resize"),
    ("GET", r"/exec/(?P<id>.*)/json", "exec-inspect"),
    ("GET", r"/images/json", "image-list"),
    ("POST", r"/images/create", "image-create"),
    ("GET", r"/volumes", "volume-list"),
    ("POST", r"/volumes/create", "volume-create"),
    ("GET", r"/networks", "network-list"),
    ("POST", r"/build", "build"),
]
_COMPILED = [(m, re.compile(p), n) for m, p, n in _ROUTES]
_VERSION = re.compile(r"/v[0-9.]+(?=/)")


@dataclass(frozen=True)
class Route:
    endpoint: str
    name: str | None
    query: dict[str, list[str]]


def parse_query(raw: str) -> dict[str, list[str]] | None:
    """Go's url.ParseQuery; None where Go returns an error (a semicolon, a bad escape)."""
    out: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        if ";" in part:
            return None
        key, _, value = part.partition("=")
        if re.search(r"%(?![0-9A-Fa-f]{2})", part):
            return None
        out.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return out


def route(method: str, target: str) -> Route | None:
    """The endpoint dockerd dispatches `method target` to, or None (404, 301 or 400)."""
    if not target.startswith("/"):
        return None
    raw_path, _, raw_query = target.partition("?")
    if re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
        return None
    path = unquote(raw_path)
    if posixpath.normpath(path) != path and not (path == "/" or path.endswith("/")):
        return None  # mux redirects to the cleaned path
    if "//" in path or (path.endswith("/") and path != "/"):
        return None
    query = parse_query(raw_query)
    if query is None:
        return None
    m = _VERSION.match(path)
    rest = path[m.end() :] if m else path
    for route_method, pattern, endpoint in _COMPILED:
        if route_method != method:
            continue
        found = pattern.fullmatch(rest)
        if found:
            groups = found.groupdict()
            return Route(endpoint, groups.get("name") or groups.get("id"), query)
    return None
