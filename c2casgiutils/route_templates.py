"""The route template of a request (``/items/{item_id}``), read from the match the application's router made.

A Starlette or FastAPI router writes what it matched into the request's scope: ``scope["endpoint"]`` (every
version), ``scope["route"]`` (FastAPI's routes; every route from Starlette 1.7 on), ``scope["root_path"]``
grown by each mount, and ``scope["router"]`` once any router saw the request. It changes the scope *in place*
(``scope.update``), so a middleware outside the router that keeps its scope finds the match there once the
application has run (or has started the response). :class:`RouteTemplates` turns that match into the full
template (mount prefixes and router prefixes included) with a dictionary lookup and one regular expression,
whatever the number of routes: an index of the application's routes (route and endpoint -> full templates)
is built once per application and rebuilt when a route it does not know shows up.

Where the scope carries no usable match, the routes are walked as :func:`walk` does (the rule of
prometheus-fastapi-instrumentator's defaults): a request answered by a non-Starlette application, a scope
copied by a middleware between us and the router, a 404 inside a mounted application. That walk only visits
the routes whose literal prefix fits the path, so it costs about the same in a large application, and its
answers are kept in a bounded cache.

Labels, as :func:`walk` gives them: mounts and included routers are prefixed (``/c2c/health_checks``,
``/api/items/{item_id}``); a path that matches a route but not its method gets that route (the 405); a
request matching nothing is None. A request that the router redirects because a slash is missing or extra
gets the template of the route it is redirected to.

The template is computed once per request and application: the first caller stores it in the request's
state (``scope["state"]``, shared by the copies middlewares make of the scope), the others read it there.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from starlette.types import Scope

__all__ = ["Noted", "RouteTemplates", "Started", "walk"]

MEMO_KEY = "c2casgiutils.route_template"
"""The key of ``scope["state"]`` holding ``(application, template)`` once the template is known."""

# Bounds: a flood of unique paths, routes or applications cannot grow memory past these.
PATH_CACHE_SIZE = 4096  # walked paths kept; the oldest is dropped first
_MAX_APPS = 8  # applications indexed at once (one in practice; more when sub-apps are instrumented too)
_MAX_SUSPECTS = 1024  # routes or endpoints that once failed the index: walked, never a rebuild again
_REDIRECT_STATUS = 307  # what Starlette's router answers when only the other form of the trailing slash matches
_MISSING: Any = object()
_CONTAINER: Any = object()  # the match is a mount whose application routes itself: the inner router found nothing
# The routes whose ``matches`` is Starlette's or FastAPI's: their path regex says which paths they can match.
_KNOWN_MATCHERS = ("starlette.routing", "fastapi.routing")


def _flat_routes(routes: Iterable[Any]) -> list[Any]:
    """Routes as Starlette matches them; FastAPI's included routers expose their resolved routes."""
    flat: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            flat.extend(getattr(context, "starlette_route", None) or context for context in contexts())
        else:
            flat.append(route)
    return flat


def walk(scope: Scope, routes: Iterable[Any]) -> str | None:
    """The template of the route that serves ``scope`` (a path-only match as a fallback), None if none.

    The reference rule (prometheus-fastapi-instrumentator's): every route is asked in order, mounts are entered.
    :class:`RouteTemplates` gives the same answers without asking every route.
    """
    return _first_match(scope, ((route, _mounted_walk(route)) for route in _flat_routes(routes)))


def _mounted_walk(route: Any) -> Callable[[Scope], str | None] | None:
    """The walk of a mount's own routes; None for any other route and for a mount of an app without routes."""
    from starlette.routing import Mount  # noqa: PLC0415

    if isinstance(route, Mount) and route.routes:
        return functools.partial(walk, routes=route.routes)
    return None


def _first_match(scope: Scope, candidates: Iterable[tuple[Any, Callable[[Scope], str | None] | None]]) -> str | None:
    """The rule of :func:`walk` for one router: ``candidates`` are its routes in order, each with the walk of the
    routes below it (a mount's) or None."""
    from starlette.routing import Match, Mount  # noqa: PLC0415

    partial = None
    for route, inner in candidates:
        match, child_scope = route.matches(scope)
        if match == Match.NONE:
            continue
        name: Any
        if isinstance(route, Mount):
            if inner is None:
                name = route.path
            else:
                child = inner({**scope, **child_scope})
                if child is None:
                    continue
                name = route.path + child
        else:
            name = getattr(route, "path", None)
            if name is None:
                continue
        if match == Match.FULL:
            return str(name)
        if partial is None:
            partial = str(name)
    return partial


def _route_path(path: str, root_path: str) -> str:
    """The path the router matches: ``path`` below ``root_path`` (Starlette's ``get_route_path``)."""
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


def _literal_prefix(pattern: str) -> str | None:
    """The text every match of ``pattern`` (``^...``) starts with; None when it is not a plain ``^`` pattern."""
    if not pattern.startswith("^"):
        return None
    literal: list[str] = []
    escaped = False
    for char in pattern[1:]:
        if escaped:
            if char.isalnum():  # \d, \w...: a class, not a character
                break
            literal.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ".^$*+?{}[]|()":
            break
        else:
            literal.append(char)
    return "".join(literal)


@dataclass
class _Level:
    """The routes of one router, with the ones worth asking for a path found without asking them all."""

    routes: list[Any]
    children: list[_Level | None]  # the routes of each mount that routes itself, else None
    exact: dict[str, list[int]] = field(default_factory=dict)  # whole path -> routes matching only it
    under: dict[str, list[int]] = field(default_factory=dict)  # prefix ending in "/" -> routes starting so
    always: list[int] = field(default_factory=list)  # routes to ask for any path

    def candidates(self, route_path: str) -> list[int]:
        """The positions of the routes that may match ``route_path``, in the router's order."""
        found = list(self.always)
        found += self.exact.get(route_path, ())
        if route_path.endswith("\n"):  # ``$`` also matches before a final newline: ``^/hello$`` matches "/hello\n"
            found += self.exact.get(route_path[:-1], ())
        under = self.under
        if under:
            start = route_path.find("/")
            while start != -1:
                found += under.get(route_path[: start + 1], ())
                start = route_path.find("/", start + 1)
        if len(found) > 1:
            found.sort()
        return found


def _level(routes: Iterable[Any], prefix: str, index: _Index) -> _Level:
    from starlette.routing import Mount  # noqa: PLC0415

    flat = _flat_routes(routes)
    level = _Level(flat, [])
    for position, route in enumerate(flat):
        child = None
        path = getattr(route, "path", None)
        if isinstance(route, Mount) and route.routes:
            child = _level(route.routes, prefix + route.path, index)
            index.containers.update((id(route), id(route.app)))
            index.keep.append(route)
        elif isinstance(path, str):
            index.add_leaf(route, prefix + path, isinstance(route, Mount))
        level.children.append(child)
        regex = getattr(route, "path_regex", None)
        pattern = regex.pattern if isinstance(regex, re.Pattern) else None
        literal = None
        if pattern is not None and getattr(type(route).matches, "__module__", None) in _KNOWN_MATCHERS:
            literal = _literal_prefix(pattern)
        if literal is None:
            level.always.append(position)
        elif pattern == f"^{re.escape(literal)}$":
            level.exact.setdefault(literal, []).append(position)
        elif literal.endswith("/"):
            level.under.setdefault(literal, []).append(position)
        else:
            level.always.append(position)
    return level


class _Leaf(NamedTuple):
    template: str
    regex: re.Pattern[str] | None  # the whole template's path regex, None when it cannot be compiled
    methods: frozenset[str] | None
    # The template when it has no parameter (``/api/hello``): a path equal to it matches its regex, so the usual
    # request is checked by a string comparison. Other paths the regex matches (``/api/hello\n``: ``$`` allows a
    # final newline) go to the regex of the slow path.
    literal: str | None = None


class _Index:
    """One application's routes: the full templates of each route and endpoint, and its levels for walks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.by_key: dict[int, list[_Leaf]] = {}
        self.containers: set[int] = set()
        self.keep: list[Any] = []  # the objects whose id() are keys: alive as long as the index
        self.routes_count = len(app.routes)
        self.root = _level(app.routes, "", self)

    def add_leaf(self, route: Any, template: str, mount: bool) -> None:
        from starlette.routing import compile_path  # noqa: PLC0415

        try:
            regex = compile_path(template + "/{path:path}" if mount else template)[0]
        except ValueError:  # a parameter named twice across a mount and its route: only walks tell
            regex = None
        methods = getattr(route, "methods", None)
        literal = (
            template if regex is not None and not mount and template.startswith("/") and "{" not in template else None
        )
        leaf = _Leaf(template, regex, frozenset(methods) if methods else None, literal)
        keys = [route, getattr(route, "original_route", None), route.app if mount else getattr(route, "endpoint", None)]
        for key in keys:
            if key is not None:
                self.by_key.setdefault(id(key), []).append(leaf)
                self.keep.append(key)

    def find(self, keys: tuple[Any, Any], route_path: str, method: str | None) -> Any:
        """The template of the leaf the router chose, _CONTAINER, or _MISSING when the index cannot tell."""
        container = False
        for key in keys:
            if key is None:
                continue
            leaves = self.by_key.get(id(key))
            if leaves is None:
                container = container or id(key) in self.containers
                continue
            partial = None
            for leaf in leaves:
                if leaf.regex is None or leaf.regex.match(route_path) is None:
                    continue
                if method is None or leaf.methods is None or method in leaf.methods:
                    return leaf.template
                if partial is None:
                    partial = leaf.template
            if partial is not None:
                return partial
        return _CONTAINER if container else _MISSING


_new_tuple = tuple.__new__


Noted = tuple[Any, str, str, Any, Any, Any]
"""What the scope held before the application ran, as a plain tuple: the fields of :class:`Started`."""


class Started(NamedTuple):
    """What the scope held before the application ran: see :meth:`RouteTemplates.start`."""

    app: Any
    root_path: str
    path: str
    route: Any
    endpoint: Any
    router: Any


class RouteTemplates:
    """Route templates of the requests of an application, from its router's match; bounded caches.

    ``app`` is the application whose routes give the templates when the scope has no ``"app"`` (a middleware
    wrapped around a Starlette application rather than added to it). Usage, in a pure ASGI middleware::

        started = templates.start(scope)
        await self.app(scope, receive, send_wrapper)
        template = templates.template(scope, started, status)  # "/items/{item_id}", or None: no route
    """

    def __init__(self, app: Any = None, cache_size: int | None = None) -> None:
        self._default_app = app
        self._cache_size = PATH_CACHE_SIZE if cache_size is None else cache_size
        self._indexes: dict[int, _Index] = {}
        self._last: _Index | None = None
        self._walked: dict[tuple[Any, ...], str | None] = {}
        self._suspects: dict[int, None] = {}
        self._lock = threading.Lock()  # index builds; lookups need none (dict reads and replacements)

    @property
    def walked(self) -> dict[tuple[Any, ...], str | None]:
        """The cache of walked paths (bounded by ``cache_size``)."""
        return self._walked

    def start(self, scope: Scope) -> Started:
        """Note what routing will change; call it before handing the scope to the application."""
        # tuple.__new__: a NamedTuple built in C, a third of the cost of calling the class.
        return _new_tuple(Started, self.noted(scope))

    def noted(self, scope: Scope) -> Noted:
        """What :meth:`start` notes, as a plain tuple (a fraction of the cost of a :class:`Started`): for
        :meth:`template`, in a middleware that counts its instructions."""
        get = scope.get
        return (
            get("app") or self._default_app,
            get("root_path", ""),
            scope["path"],
            get("route"),
            get("endpoint"),
            get("router"),
        )

    def template(self, scope: Scope, started: Noted, status: int | None = None) -> str | None:
        """The request's route template once the application routed it (at the response start or after).

        ``started``: what :meth:`start` (or :meth:`noted`) returned before the application ran. ``status`` (the
        response status) tells a slash redirect from another answer of an unmatched request.
        """
        app, root_path, path, route_before, _, _ = started
        state = scope.get("state")
        if state is not None:
            memo = state.get(MEMO_KEY)
            if memo is not None and memo[0] is app:
                template: str | None = memo[1]
                return template
        # The usual case, inline: the router set a route the index knows in one place only, and it fits the path.
        route = scope.get("route")
        index = self._last
        found: Any = _MISSING
        if route is not route_before and index is not None and index.app is app:
            leaves = index.by_key.get(id(route))
            if leaves is not None and len(leaves) == 1:
                leaf = leaves[0]
                route_path = _route_path(path, root_path) if root_path else path
                if leaf.literal is not None:
                    if route_path == leaf.literal:
                        found = leaf.literal
                elif leaf.regex is not None and leaf.regex.match(route_path):
                    found = leaf.template
        if found is _MISSING:
            found = self._resolve(scope, started if type(started) is Started else _new_tuple(Started, started), status)
        if state is not None:
            state[MEMO_KEY] = (app, found)
        return found  # type: ignore[no-any-return]

    def _resolve(self, scope: Scope, started: Started, status: int | None) -> str | None:
        index = self._index(started.app)
        if index is None:
            return None
        route = scope.get("route")
        endpoint = scope.get("endpoint")
        if route is not started.route or endpoint is not started.endpoint:
            keys = (
                route if route is not started.route else None,
                endpoint if endpoint is not started.endpoint else None,
            )
            method = scope.get("method") if scope["type"] == "http" else None
            route_path = _route_path(started.path, started.root_path)
            found = index.find(keys, route_path, method)
            if found is _MISSING:
                found = self._rebuilt_find(index, keys, route_path, method)
            if found is not _MISSING and found is not _CONTAINER:
                template: str | None = found
                return template
        elif started.router is None and scope.get("router") is not None:
            # The router saw this very scope and matched nothing at its level: a 404, or a slash redirect.
            return self._redirect_target(scope, started, status)
        return self._walk(scope, started, status)

    def _rebuilt_find(self, index: _Index, keys: tuple[Any, Any], route_path: str, method: str | None) -> Any:
        """Rebuild the index once for routes it did not know (added since); the same failure again is walked."""
        suspect = id(keys[0] if keys[0] is not None else keys[1])
        with self._lock:
            if suspect in self._suspects:
                return _MISSING
            if len(self._suspects) >= _MAX_SUSPECTS:
                self._suspects.clear()
            self._suspects[suspect] = None
            index = self._build(index.app)
        return index.find(keys, route_path, method)

    def _index(self, app: Any) -> _Index | None:
        last = self._last
        if last is not None and last.app is app:
            return last
        index = self._indexes.get(id(app))
        if index is None or index.app is not app:
            if not isinstance(getattr(app, "routes", None), list):
                return None
            with self._lock:
                index = self._build(app)
        self._last = index
        return index

    def _build(self, app: Any) -> _Index:
        index = _Index(app)
        if len(self._indexes) >= _MAX_APPS:
            self._indexes.clear()
        self._indexes[id(app)] = index
        self._last = index
        self._walked.clear()  # walked on the routes as they were
        return index

    def _redirect_target(self, scope: Scope, started: Started, status: int | None) -> str | None:
        if status != _REDIRECT_STATUS or scope["type"] != "http":
            return None
        router = getattr(started.app, "router", scope.get("router"))
        path = started.path
        if not getattr(router, "redirect_slashes", False) or _route_path(path, started.root_path) in ("/", ""):
            return None
        toggled = path.rstrip("/") if path.endswith("/") else path + "/"
        return self.walk_path(scope, started._replace(path=toggled))

    def _walk(self, scope: Scope, started: Started, status: int | None) -> str | None:
        template = self.walk_path(scope, started)
        return self._redirect_target(scope, started, status) if template is None else template

    def walk_path(self, scope: Scope, started: Started) -> str | None:
        """What :func:`walk` answers for the scope as ``started`` saw it, from a bounded cache."""
        method = scope.get("method")
        key = (id(started.app), started.root_path, started.path, method, scope["type"])
        found = self._walked.get(key, _MISSING)
        if found is not _MISSING:
            template: str | None = found
            return template
        index = self._index(started.app)
        if index is None:
            return None
        if len(started.app.routes) != index.routes_count:  # routes added at the top since the index was built
            with self._lock:
                index = self._build(started.app)
        probe = {
            "type": scope["type"],
            "path": started.path,
            "root_path": started.root_path,
            "method": method,
            "headers": scope.get("headers", ()),
        }
        template = _pruned_walk(probe, index.root)
        if len(self._walked) >= self._cache_size:
            self._walked.pop(next(iter(self._walked)))
        self._walked[key] = template
        return template


def _pruned_walk(scope: Scope, level: _Level) -> str | None:
    """:func:`walk`, asking only the routes whose literal prefix fits the path."""
    candidates = level.candidates(_route_path(scope["path"], scope.get("root_path", "")))
    return _first_match(
        scope,
        (
            (level.routes[position], None if child is None else functools.partial(_pruned_walk, level=child))
            for position in candidates
            for child in (level.children[position],)
        ),
    )
