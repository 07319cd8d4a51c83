/* The task graph: one node per task (coloured by state), or per function
 * when there are many (sized by tasks, coloured by the most common state).
 * Click a task for its story. */
"use strict";
(function () {
  document.getElementById("main").innerHTML = shoal.card("graph", "Task graph", 560);
  var STATE = {released: "--line", waiting: "--idle", queued: "--idle", "no-worker": "--warn",
               processing: "--accent", memory: "--ok", erred: "--bad"};
  var last = null;

  function main(counts) {
    var best = null, n = -1;
    for (var k in counts) if (counts[k] > n) { best = k; n = counts[k]; }
    return best || "released";
  }

  function draw(g) {
    var el = document.getElementById("graph");
    if (!g.nodes.length) {
      el.innerHTML = "<div class=empty>no tasks</div>";
      document.getElementById("graph-note").textContent = "";
      return;
    }
    if (el.querySelector(".empty")) el.innerHTML = "";
    var pos = g.positions;
    var ex = [], ey = [];
    g.edges.forEach(function (e) {
      ex.push(pos[e[0]][0], pos[e[1]][0], null);
      ey.push(pos[e[0]][1], pos[e[1]][1], null);
    });
    var states = g.nodes.map(function (n) { return g.grouped ? main(n.counts) : n.state; });
    var sizes = g.nodes.map(function (n) {
      if (!g.grouped) return 12;
      var total = 0; for (var k in n.counts) total += n.counts[k];
      return 12 + 6 * Math.log10(1 + total);
    });
    var labels = g.nodes.map(function (n, i) {
      if (!g.grouped) return shoal.escape(n.id) + "<br>" + states[i];
      return shoal.escape(n.name) + "<br>" + Object.keys(n.counts).map(function (k) {
        return k + ": " + n.counts[k]; }).join("<br>");
    });
    var data = [
      {type: "scatter", mode: "lines", x: ex, y: ey, line: {color: shoal.css("--line"), width: 1}, hoverinfo: "skip"},
      {type: "scatter", mode: g.grouped ? "markers+text" : "markers", x: pos.map(function (p) { return p[0]; }),
       y: pos.map(function (p) { return p[1]; }), text: g.grouped ? g.nodes.map(function (n) { return n.name; }) : null,
       textposition: "top center", customdata: g.nodes.map(function (n) { return n.id; }),
       hovertext: labels, hovertemplate: "%{hovertext}<extra></extra>",
       marker: {size: sizes, color: states.map(function (s) { return shoal.css(STATE[s] || "--idle"); }),
                line: {width: 1, color: shoal.css("--fg")}}},
    ];
    Plotly.react(el, data, shoal.layout({margin: {l: 10, r: 10, t: 10, b: 10},
      xaxis: {visible: false}, yaxis: {visible: false}}), shoal.config);
    if (!el.dataset.clicks) {
      el.dataset.clicks = "1";
      el.on("plotly_click", function (ev) {
        if (last && !last.grouped && ev.points && ev.points.length && ev.points[0].customdata) {
          shoal.story(ev.points[0].customdata);
        }
      });
    }
    document.getElementById("graph-note").textContent = g.grouped
      ? g.nodes.length + " functions (grouped)" : g.nodes.length + " tasks";
  }

  // positions come with the graph (views.graph_layout, in the dashboard process)
  var pending = false;
  shoal.live(["status", "graph"], function (msg) {
    if (!msg.graph) return;
    last = msg.graph;
    if (!pending) {  // drawn at the next frame: none while the tab is hidden
      pending = true;
      requestAnimationFrame(function () { pending = false; draw(last); });
    }
  });
  shoal.onTheme(function () { if (last) draw(last); });
})();
