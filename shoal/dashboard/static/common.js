/* shoal dashboard: what every page uses.  The live link (a websocket that
 * reconnects), the JSON API, the theme, plotly layouts in the theme's
 * colours, number formats, and the task-story panel. */
"use strict";
var shoal = (function () {
  var base = new URL(".", location.href);
  var themeListeners = [];

  function api(path) {
    return fetch(new URL(path, base), {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      return r.json();
    });
  }

  // live updates: topics as feed.py names them; onUpdate(message) for each
  function live(topics, onUpdate) {
    var delay = 500;
    var badge = document.getElementById("connection");
    function open() {
      var url = new URL("ws?topics=" + topics.join(","), base);
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      var ws = new WebSocket(url);
      ws.onopen = function () { delay = 500; badge.textContent = "live"; badge.className = "connection live"; };
      ws.onmessage = function (ev) {
        var msg = JSON.parse(ev.data);
        if (msg.status) summary(msg.status);
        onUpdate(msg);
      };
      ws.onclose = function () {
        badge.textContent = "reconnecting"; badge.className = "connection down";
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function layout(extra) {
    var l = {
      paper_bgcolor: css("--panel"), plot_bgcolor: css("--panel"),
      font: {color: css("--fg"), size: 11},
      margin: {l: 110, r: 10, t: 4, b: 26},
      xaxis: {gridcolor: css("--line"), zerolinecolor: css("--line"), automargin: true},
      yaxis: {gridcolor: css("--line"), zerolinecolor: css("--line"), automargin: true},
      showlegend: false, barmode: "stack", bargap: 0.15, uirevision: "keep",
      hoverlabel: {font: {size: 11}},
    };
    for (var k in extra) {
      if (typeof extra[k] === "object" && extra[k] !== null && !Array.isArray(extra[k]) && l[k]) {
        for (var j in extra[k]) l[k][j] = extra[k][j];
      } else l[k] = extra[k];
    }
    return l;
  }

  var config = {displaylogo: false, responsive: true, displayModeBar: false};

  function onTheme(fn) { themeListeners.push(fn); }

  function setTheme(t) {
    document.documentElement.dataset.theme = t;
    localStorage.setItem("shoal-theme", t);
    themeListeners.forEach(function (fn) { fn(); });
  }

  document.getElementById("theme").addEventListener("click", function () {
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  });

  // a stable colour per function name (the same on every page); no pure red:
  // red marks transfers and errors
  var PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#bcbd22", "#8c564b", "#e377c2",
                 "#ff7f0e", "#3f8f8f", "#6b6ecf", "#7f7f7f", "#b5a33a"];
  function colour(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + units[i];
  }

  function duration(s) {
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function escape(text) {
    var d = document.createElement("div");
    d.textContent = String(text);
    return d.innerHTML;
  }

  // the header's numbers, from a status update
  function summary(s) {
    var t = s.totals, c = s.counts || {};
    var lag = s.scheduler ? s.scheduler.loop_lag : 0;
    document.getElementById("summary").innerHTML =
      "<b id='n-workers' data-value='" + t.workers + "'>" + t.workers + "</b> workers · " +
      "<b id='n-threads' data-value='" + t.nthreads + "'>" + t.nthreads + "</b> threads · " +
      "<b id='n-memory' data-value='" + t.memory + "'>" + bytes(t.memory) + "</b>" +
      (t.memory_limit ? " of " + bytes(t.memory_limit) : "") + " memory · " +
      "<b id='n-processing' data-value='" + t.processing + "'>" + t.processing + "</b> processing · " +
      "<b id='n-in-memory' data-value='" + (c.memory || 0) + "'>" + (c.memory || 0) + "</b> in memory · " +
      "<b id='n-erred' data-value='" + (c.erred || 0) + "'>" + (c.erred || 0) + "</b> erred · " +
      "loop lag <b>" + duration(lag) + "</b>";
  }

  // the story of a task: its transitions on the scheduler
  function story(key) {
    api("api/story?key=" + encodeURIComponent(key)).then(function (answer) {
      document.getElementById("story-title").textContent = key;
      var rows = answer.story.map(function (e) {
        return "<tr><td>" + escape(e[1]) + "</td><td>" + escape(e[2]) + "</td><td>" + escape(e[3]) +
          "</td><td>" + escape(e[4].toFixed(3)) + "</td></tr>";
      });
      document.getElementById("story-rows").innerHTML =
        rows.join("") || "<tr><td colspan=4>no transitions kept for this key</td></tr>";
      document.getElementById("story").hidden = false;
    });
  }
  document.getElementById("story-close").addEventListener("click", function () {
    document.getElementById("story").hidden = true;
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") document.getElementById("story").hidden = true;
  });

  function card(id, title, height, cls) {
    return "<section class='card " + (cls || "") + "'><h2>" + title + "<span id='" + id +
      "-note'></span></h2><div id='" + id + "' class='chart' style='height:" + height + "px'></div></section>";
  }

  return {api: api, live: live, layout: layout, config: config, colour: colour, bytes: bytes,
          duration: duration, escape: escape, story: story, onTheme: onTheme, css: css, card: card};
})();
