"""shoal's dashboard: the cluster, live, in a browser.

It runs in a process of its own (``shoal dashboard``, started by a
``LocalCluster`` or a ``shoal scheduler`` when the first browser connects),
connected to the scheduler as a client.  The scheduler only answers its
requests for compact views (``snapshot.py``, on the scheduler's side, in
``shoal/scheduler/dashboard_feed.py``); the HTTP server, the JSON, the
Prometheus metrics and the pages are all here.

    snapshot.py   PURE: scheduler records -> JSON-able views
    views.py      PURE: views -> what the pages and /metrics show (layouts, flame graph rows)
    feed.py       the dashboard's link to the scheduler: polls views while someone looks
    auth.py       who may look: Host header, token login, session cookie
    app.py        the aiohttp application and its routes
    launch.py     binding the address, starting the dashboard process, the link
    static/       pages, script and style; charts drawn by plotly.js from the plotly package

See docs/dashboard.md.
"""
