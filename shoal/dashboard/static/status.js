/* The status page: task stream, progress by function, memory, processing
 * and CPU per worker; live from the "status" and "stream" topics. */
"use strict";
(function () {
  var WINDOW = 20;       // seconds of task stream shown
  var KEEP = 1500;       // runs drawn at most
  var STEP_COLOURS = {"transfer": "#d62728", "disk-write": "#8c564b", "disk-read": "#bcbd22"};
  var DRAW_EVERY = 1000;  // ms between redraws of the charts (updates come twice as often)
  document.getElementById("main").innerHTML = "<div class='grid'>" +
    shoal.card("stream", "Task stream", 290, "wide") +
    shoal.card("progress", "Progress by function", 250) +
    shoal.card("memory", "Memory per worker", 250) +
    shoal.card("processing", "Tasks processing per worker", 180) +
    shoal.card("cpu", "CPU per worker", 180) + "</div>";

  var runs = [];
  var received = 0;
  var lastStatus = null;
  var rowNames = {};     // "worker thread" -> row label
  var threadsSeen = {};  // worker -> number of threads given a row

  function prefix(key) {
    var parts = String(key).split("-");
    while (parts.length > 1 && /^[0-9a-f]+$/.test(parts[parts.length - 1])) parts.pop();
    return parts.join("-");
  }

  function rowOf(r, names) {
    var id = r.worker + " " + r.thread;
    if (!(id in rowNames)) {
      var n = r.thread === "disk" ? "disk" : (threadsSeen[r.worker] = (threadsSeen[r.worker] || 0) + 1);
      rowNames[id] = (names[r.worker] || r.worker) + " · " + n;
    }
    return rowNames[id];
  }

  // one line trace per function (a thick segment per run): a few SVG paths
  // however many runs, where bars would be one element each
  function drawStream(now) {
    var names = {};
    (lastStatus ? lastStatus.workers : []).forEach(function (w) { names[w.address] = w.name; });
    var from = now - WINDOW;
    var minWidth = WINDOW / 1500;
    var traces = {};
    function trace(name, colour) {
      if (!traces[name]) traces[name] = {type: "scatter", mode: "lines", name: name, x: [], y: [],
        customdata: [], text: [], line: {color: colour}, hovertemplate: "%{text}<extra></extra>",
        connectgaps: false};
      return traces[name];
    }
    runs.forEach(function (r) {
      var row = rowOf(r, names);
      var fn = prefix(r.key);
      r.startstops.forEach(function (s) {
        if (s.stop < from) return;
        var t = s.action === "compute" ? (r.status === "OK" ? trace(fn, shoal.colour(fn)) : trace("erred", shoal.css("--fg")))
          : trace(s.action, STEP_COLOURS[s.action] || "#ff9f1c");
        var a = s.start - now, b = Math.max(s.stop - now, a + minWidth);
        var tip = shoal.escape(r.key) + "<br>" + s.action + " on " + shoal.escape(names[r.worker] || r.worker) +
          ", " + shoal.duration(s.stop - s.start) + (s.source ? " from " + shoal.escape(s.source) : "");
        t.x.push(a, (a + b) / 2, b, null);
        t.y.push(row, row, row, null);
        t.customdata.push(r.key, r.key, r.key, null);
        t.text.push(tip, tip, tip, null);
      });
    });
    var rows = Math.max(1, Object.keys(rowNames).length);
    var height = Math.max(200, Math.min(520, 20 * rows + 60));
    var width = Math.max(2, 0.75 * (height - 50) / rows);
    var data = Object.keys(traces).sort().map(function (k) { traces[k].line.width = width; return traces[k]; });
    var el = document.getElementById("stream");
    el.style.height = height + "px";
    Plotly.react(el, data, shoal.layout({
      hovermode: "closest", margin: {l: 110, r: 10, t: 14, b: 30},
      xaxis: {range: [-WINDOW, 0], title: {text: "seconds ago", standoff: 2}, ticksuffix: " s"},
      yaxis: {type: "category", categoryorder: "category descending"},
    }), shoal.config);
    if (!el.dataset.clicks) {  // a bar's task: its story
      el.dataset.clicks = "1";
      el.on("plotly_click", function (ev) {
        if (ev.points && ev.points.length) shoal.story(ev.points[0].customdata);
      });
    }
    var note = document.getElementById("stream-note");
    note.dataset.total = received;
    note.textContent = received + " task runs seen";
  }

  function drawProgress(s) {
    var rows = (s.progress || []).slice(0, 15).reverse();
    var names = rows.map(function (r) { return r.name; });
    var parts = [["memory", "--ok"], ["processing", "--accent"], ["waiting", "--idle"], ["erred", "--bad"], ["released", "--line"]];
    var data = parts.map(function (p) {
      return {type: "bar", orientation: "h", name: p[0], y: names, x: rows.map(function (r) { return r[p[0]]; }),
        marker: {color: shoal.css(p[1])}, hovertemplate: "%{y}: %{x} " + p[0] + "<extra></extra>"};
    });
    var el = document.getElementById("progress");
    el.style.height = Math.max(150, 26 * names.length + 50) + "px";
    Plotly.react(el, data, shoal.layout({showlegend: true, legend: {orientation: "h", y: -0.15},
      yaxis: {type: "category"}}), shoal.config);
    var age = s.counts_time ? Math.max(0, s.time - s.counts_time) : 0;
    document.getElementById("progress-note").textContent =
      (s.progress || []).length + " functions" + (age > 2 ? " · counted " + shoal.duration(age) + " ago" : "");
  }

  function workerBars(id, s, series, extra, height, xaxis) {
    var names = s.workers.map(function (w) { return w.name; }).reverse();
    var ws = s.workers.slice().reverse();
    var data = series.map(function (p) {
      return {type: "bar", orientation: "h", name: p.name, y: names, x: ws.map(p.value),
        marker: {color: shoal.css(p.colour)}, hovertemplate: "%{y}: " + p.name + " %{text}<extra></extra>",
        text: ws.map(p.label), textposition: "none"};
    });
    var el = document.getElementById(id);
    el.style.height = Math.max(height, 22 * names.length + 50) + "px";
    Plotly.react(el, data.concat(extra ? extra(names, ws) : []), shoal.layout({showlegend: series.length > 1,
      legend: {orientation: "h", y: -0.2}, yaxis: {type: "category"}, xaxis: xaxis || {rangemode: "tozero"}}), shoal.config);
  }

  function drawWorkers(s) {
    var mem = function (k) { return function (w) { return w[k]; }; };
    // the scale of what is used; a limit far beyond it is named, not drawn
    var top = Math.max.apply(null, s.workers.map(function (w) { return w.memory + w.spilled; }).concat([1]));
    var limits = s.workers.map(function (w) { return w.memory_limit; }).filter(function (l) { return l > 0; });
    var near = limits.length && Math.max.apply(null, limits) < 4 * top;
    var xmax = near ? 1.05 * Math.max(top, Math.max.apply(null, limits)) : 1.15 * top;
    var memLabel = function (k) {  // the amount, and the process's memory against its limit
      return function (w) {
        return shoal.bytes(w[k]) + (w.memory_limit ? " (process " + shoal.bytes(w.memory) + " of " +
          shoal.bytes(w.memory_limit) + ", " + (100 * w.memory / w.memory_limit).toFixed(0) + " %)" : "");
      };
    };
    workerBars("memory", s, [
      {name: "managed", colour: "--accent", value: mem("managed"), label: memLabel("managed")},
      {name: "unmanaged", colour: "--idle", value: mem("unmanaged"), label: memLabel("unmanaged")},
      {name: "spilled", colour: "--warn", value: mem("spilled"), label: memLabel("spilled")},
    ], function (names, ws) {
      return [{type: "scatter", mode: "markers", name: "limit", y: names,
        x: ws.map(function (w) { return near && w.memory_limit ? w.memory_limit : null; }),
        marker: {symbol: "line-ns-open", size: 18, color: shoal.css("--bad"), line: {width: 3}},
        hovertemplate: "%{y}: limit<extra></extra>"}];
    }, 200, {range: [0, xmax], tickformat: ".2s", ticksuffix: "B"});
    workerBars("processing", s, [{name: "processing", colour: "--accent", value: mem("processing"),
      label: function (w) { return w.processing + " (" + w.executing + " executing)"; }}], null, 140);
    workerBars("cpu", s, [{name: "CPU", colour: "--ok", value: mem("cpu"),
      label: function (w) { return w.cpu.toFixed(0) + " %"; }}], null, 140,
      {range: [0, Math.max(100, 1.1 * Math.max.apply(null, s.workers.map(function (w) { return w.cpu; }).concat([0])))],
       ticksuffix: " %"});
    document.getElementById("memory-note").textContent = shoal.bytes(s.totals.memory) +
      (s.totals.memory_limit ? " of " + shoal.bytes(s.totals.memory_limit) : "");
    document.getElementById("processing-note").textContent = s.totals.processing + " in all";
    document.getElementById("cpu-note").textContent = s.totals.cpu.toFixed(0) + " % in all";
  }

  // drawing waits for the next frame (none while the tab is hidden), and
  // several updates in between are drawn once
  var latest = null, pending = false, statusDirty = false, drawn = 0;
  var drawnProgress = null, drawnWorkers = null, streamEmpty = false;
  function frame() {
    pending = false;
    var now = Date.now();
    if (now - drawn < DRAW_EVERY) {  // drawn lately: once more when the time comes
      pending = true;
      setTimeout(function () { requestAnimationFrame(frame); }, DRAW_EVERY - (now - drawn));
      return;
    }
    drawn = now;
    if (statusDirty && lastStatus) {  // only what changed is drawn again
      var p = JSON.stringify(lastStatus.progress), w = JSON.stringify(lastStatus.workers.map(function (x) {
        var mib = function (n) { return Math.round(n / 1048576); };  // changes a reader would see
        return [x.name, mib(x.managed), mib(x.unmanaged), mib(x.spilled), x.memory_limit, x.processing,
                Math.round(x.cpu)]; }));
      if (p !== drawnProgress) { drawProgress(lastStatus); drawnProgress = p; }
      if (w !== drawnWorkers) { drawWorkers(lastStatus); drawnWorkers = w; }
      statusDirty = false;
    }
    // the stream moves with time while it shows runs; an empty one stays drawn
    if (latest !== null && (runs.length || !streamEmpty)) { drawStream(latest); streamEmpty = !runs.length; }
  }
  shoal.live(["status", "stream"], function (msg) {
    if (msg.stream) {
      received += msg.stream.length;
      runs = runs.concat(msg.stream);
      var cut = msg.time - WINDOW;
      runs = runs.filter(function (r) {
        return r.startstops[r.startstops.length - 1].stop >= cut;
      }).slice(-KEEP);
    }
    if (msg.status) { lastStatus = msg.status; statusDirty = true; }
    latest = msg.time;
    if (!pending) { pending = true; requestAnimationFrame(frame); }
  });
  shoal.onTheme(function () {
    if (lastStatus) { drawProgress(lastStatus); drawWorkers(lastStatus); }
    if (latest) drawStream(latest);
  });
})();
