"""The dashboard's web application (aiohttp): pages, the websocket that
pushes updates to them, the JSON API they are drawn from, ``/metrics``.

Routes (under the prefix, default none)::

    /status /workers /graph /profile     pages (static/page.html + static/<page>.js)
    /ws?topics=status,stream,...          live updates (feed.py's topics), JSON text frames
    /api/status /api/workers /api/task-stream /api/graph
    /api/profile?key=&seconds= /api/story?key=          the same data, asked for once
    /metrics                              Prometheus text format (metrics.py)
    /login                                the token form, beyond loopback (auth.py)
    /static/...                           this package's static/, and plotly.min.js from plotly's

Every request passes ``_guard``: the Host header (DNS rebinding), then the
session (beyond loopback).  ``run`` serves until its parent or the
scheduler goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from aiohttp import WSMsgType, web

from shoal.dashboard import auth, views
from shoal.dashboard.feed import TOPICS, Feed

logger = logging.getLogger("shoal.dashboard")

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGES = {"status": "Status", "workers": "Workers", "graph": "Task graph", "profile": "Profile"}

FEED: web.AppKey[Feed] = web.AppKey("feed", Feed)
SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("settings", dict)


def plotly_js() -> str:
    """The path of plotly.min.js as the plotly package ships it (the package
    itself is not imported: it is large, and only its file is needed)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard draws its charts with plotly.js from the plotly "
                           "package: pip install plotly")
    return os.path.join(next(iter(spec.submodule_search_locations)), "package_data", "plotly.min.js")


def make_app(feed: Feed, bound_host: str, prefix: str = "", login: bool = False,
             token: str | None = None) -> web.Application:
    """The application; ``login``: ask for the cluster's ``token`` (beyond loopback)."""
    if login and not token:
        raise ValueError("a dashboard that asks for the cluster's token needs one")
    from shoal import config

    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    app = web.Application(middlewares=[_guard])
    app[FEED] = feed
    app[SETTINGS] = {
        "prefix": prefix, "login": login, "token": token,
        "hosts": auth.host_names(bound_host, config.get("dashboard.allowed-hosts") or ()),
        "sessions": auth.Sessions(config.duration("dashboard.session-lifetime") or 43200.0),
        "page": _read(os.path.join(STATIC, "page.html")),
    }
    r = app.router
    r.add_get(prefix + "/", _index)
    if prefix:
        r.add_get(prefix, _index)
    for page in PAGES:
        r.add_get(f"{prefix}/{page}", _page)
    r.add_post(prefix + "/login", _login)
    for path, handler in _GETS.items():
        r.add_get(prefix + path, handler)
    r.add_static(prefix + "/static", STATIC, append_version=False)
    return app


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------------- guard


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    host = request.headers.get("Host")
    if not auth.host_allowed(host, settings["hosts"]):
        return web.Response(status=421, text=f"this dashboard does not answer to the host {host!r}")
    prefix = settings["prefix"]
    public = request.path in (prefix + "/login", prefix + "/health") or request.path.startswith(
        prefix + "/static/")
    if settings["login"] and not public and not _logged_in(request):
        if request.path == prefix + "/metrics" and _bearer_ok(request):
            return await handler(request)  # type: ignore[no-any-return]
        if request.method == "GET" and request.path.removeprefix(prefix).lstrip("/") in ("", *PAGES):
            raise web.HTTPFound(f"{prefix}/login?next={request.path}")
        return web.Response(status=401, text="log in at /login with the cluster's token")
    return await handler(request)  # type: ignore[no-any-return]


def _logged_in(request: web.Request) -> bool:
    return bool(request.app[SETTINGS]["sessions"].valid(request.cookies.get(auth.COOKIE), time.time()))


def _token_ok(request: web.Request, candidate: str) -> bool:
    from shoal.security import verify_token

    return verify_token(candidate, request.app[SETTINGS]["token"])


def _bearer_ok(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and _token_ok(request, header[7:].strip())


_LOGIN = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>shoal dashboard: log in</title>
<link rel="stylesheet" href="{prefix}/static/dashboard.css"></head>
<body class="login"><form method="post" action="{prefix}/login">
<h2>shoal dashboard</h2><p>{message}</p>
<input type="hidden" name="next" value="{next}">
<input type="password" name="token" placeholder="the cluster's token" autofocus>
<button type="submit">Log in</button></form></body></html>"""


async def _login_form(request: web.Request, message: str = "") -> web.Response:
    import html

    prefix = request.app[SETTINGS]["prefix"]
    target = request.query.get("next", f"{prefix}/status")
    text = _LOGIN.format(prefix=prefix, next=html.escape(_safe_next(target, prefix)),
                         message=html.escape(message or "This dashboard needs the cluster's token."))
    return web.Response(text=text, content_type="text/html", status=401 if message else 200)


def _safe_next(target: str, prefix: str) -> str:
    """Only a path of this dashboard (never another site) to go to after login."""
    return target if target.startswith("/") and not target.startswith("//") else f"{prefix}/status"


async def _login(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not auth.origin_allowed(request.headers.get("Origin"), request.headers.get("Host")):
        return web.Response(status=403, text="cross-site login refused")
    form = await request.post()
    token = str(form.get("token", ""))
    if not _token_ok(request, token):
        logger.warning("dashboard: a login with a wrong token from %s", request.remote)
        return await _login_form(request, "That is not the cluster's token.")
    response = web.Response(status=302, headers={
        "Location": _safe_next(str(form.get("next", "")), settings["prefix"])})
    response.set_cookie(auth.COOKIE, settings["sessions"].new(time.time()), httponly=True,
                        samesite="Strict", path=settings["prefix"] or "/",
                        max_age=int(settings["sessions"].lifetime))
    return response


# ---------------------------------------------------------------------- pages


async def _index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(request.app[SETTINGS]["prefix"] + "/status")


async def _page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    page = request.path.rsplit("/", 1)[-1]
    nav = "".join(f'<a href="{p}"{" class=current" if p == page else ""}>{title}</a>'
                  for p, title in PAGES.items())
    text = (settings["page"].replace("{{title}}", PAGES[page]).replace("{{page}}", page)
            .replace("{{nav}}", nav))
    return web.Response(text=text, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


async def _plotly(request: web.Request) -> web.FileResponse:
    return web.FileResponse(plotly_js(), headers={"Cache-Control": "max-age=86400"})


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# ---------------------------------------------------------------------- live updates


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    if not auth.origin_allowed(request.headers.get("Origin"), request.headers.get("Host")):
        raise web.HTTPForbidden(text="cross-site websocket refused")
    topics = frozenset(t for t in request.query.get("topics", "status").split(",") if t in TOPICS)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    feed = request.app[FEED]
    sub = feed.subscribe(topics)
    reader = asyncio.get_running_loop().create_task(_drain(ws))
    try:
        while not ws.closed and not reader.done():
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await ws.send_str(getter.result())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(sub)
        reader.cancel()
        await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and drop) what the page sends, until it goes."""
    async for msg in ws:
        if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            break


# ---------------------------------------------------------------------- JSON API


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _api_status(request: web.Request) -> web.Response:
    feed = request.app[FEED]
    return _json(await feed.get_status(max_age=feed.interval))


async def _api_workers(request: web.Request) -> web.Response:
    feed = request.app[FEED]
    status = await feed.get_status(max_age=feed.interval)
    logs = await feed.get_logs()
    return _json({"workers": status["workers"], "totals": status["totals"], "logs": logs})


async def _api_task_stream(request: web.Request) -> web.Response:
    feed = request.app[FEED]
    if not feed.subscribers or "stream" not in feed.wanted():
        await feed.get_stream()
    return _json({"records": list(feed.stream)})


async def _api_graph(request: web.Request) -> web.Response:
    return _json(await request.app[FEED].get_graph())


async def _api_profile(request: web.Request) -> web.Response:
    key = request.query.get("key") or None
    try:
        seconds = float(request.query.get("seconds", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="seconds must be a number") from None
    start = time.time() - seconds if seconds > 0 else None
    tree = await request.app[FEED].get_profile(key, start)
    return _json({"count": tree.get("count", 0), "flame": views.flame_rows(tree)})


async def _api_story(request: web.Request) -> web.Response:
    key = request.query.get("key")
    if not key:
        raise web.HTTPBadRequest(text="give the task's key: /api/story?key=...")
    story = await request.app[FEED].get_story(key)
    return _json({"key": key, "story": story})


async def _metrics(request: web.Request) -> web.Response:
    from shoal.dashboard.metrics import exposition

    feed = request.app[FEED]
    body, content_type = exposition(await feed.get_status(max_age=feed.interval))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


#: the GET routes besides the pages, under the prefix
_GETS: dict[str, Any] = {
    "/login": _login_form, "/ws": _websocket, "/api/status": _api_status,
    "/api/workers": _api_workers, "/api/task-stream": _api_task_stream, "/api/graph": _api_graph,
    "/api/profile": _api_profile, "/api/story": _api_story, "/metrics": _metrics,
    "/health": _health, "/static/plotly.min.js": _plotly,
}


# ---------------------------------------------------------------------- running


async def serve(scheduler_address: str, *, sock: Any = None, host: str = "127.0.0.1",
                port: int = 0, prefix: str = "", login: bool = False,
                security: Any = None) -> tuple[web.AppRunner, Feed]:
    """Start serving (on ``sock``, a bound listening socket, or host:port);
    ``security``: the cluster's ``shoal.Security`` (its token lets the
    dashboard connect, and browsers beyond loopback log in with it)."""
    feed = await Feed(scheduler_address, security).start()
    bound = sock.getsockname()[0] if sock is not None else host
    app = make_app(feed, bound, prefix, login, getattr(security, "token", None))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite = (web.SockSite(runner, sock) if sock is not None
                          else web.TCPSite(runner, host, port))
    await site.start()
    return runner, feed
