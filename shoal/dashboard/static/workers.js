/* The workers page: one row per worker, with its recent log lines. */
"use strict";
(function () {
  document.getElementById("main").innerHTML = "<section class='card'><h2>Workers<span id='workers-note'></span></h2>" +
    "<table id='workers' class='data'><thead><tr><th>name</th><th>address</th><th class=num>threads</th>" +
    "<th class=num>CPU</th><th>memory</th><th class=num>managed</th><th class=num>processing</th>" +
    "<th class=num>in memory</th><th class=num>uptime</th><th class=num>last seen</th><th>logs</th></tr></thead>" +
    "<tbody></tbody></table></section>";
  var logs = {};
  var open = {};
  var last = null;

  function draw(s) {
    var rows = s.workers.map(function (w) {
      var frac = w.memory_limit ? Math.min(1, w.memory / w.memory_limit) : 0;
      var up = w.started ? Math.max(0, s.time - w.started) : 0;
      var lines = logs[w.address] || [];
      var row = "<tr class='worker' data-address='" + shoal.escape(w.address) + "' data-name='" + shoal.escape(w.name) + "'>" +
        "<td>" + shoal.escape(w.name) + "</td><td>" + shoal.escape(w.address) + "</td>" +
        "<td class=num data-field=nthreads>" + w.nthreads + "</td>" +
        "<td class=num>" + w.cpu.toFixed(0) + " %</td>" +
        "<td><div class=bar title='" + shoal.bytes(w.memory) + (w.memory_limit ? " of " + shoal.bytes(w.memory_limit) : "") +
        "'><span style='width:" + (100 * frac).toFixed(1) + "%'></span></div>" + shoal.bytes(w.memory) + "</td>" +
        "<td class=num>" + shoal.bytes(w.managed) + "</td>" +
        "<td class=num data-field=processing>" + w.processing + "</td>" +
        "<td class=num data-field=in_memory>" + w.in_memory + "</td>" +
        "<td class=num>" + (up ? shoal.duration(up) : "") + "</td>" +
        "<td class=num>" + shoal.duration(Math.max(0, s.time - w.last_seen)) + " ago</td>" +
        "<td><button type=button class=toggle data-address='" + shoal.escape(w.address) + "'>" +
        (open[w.address] ? "hide" : "show") + " (" + lines.length + ")</button></td></tr>";
      if (open[w.address]) {
        row += "<tr class=logs><td colspan=11><div class=logs-box>" + (lines.map(function (l) {
          return shoal.escape(l[0] + " " + l[1]);
        }).join("\n") || "no log lines") + "</div></td></tr>";
      }
      return row;
    });
    document.querySelector("#workers tbody").innerHTML = rows.join("") ||
      "<tr><td colspan=11 class=empty>no workers</td></tr>";
    document.getElementById("workers-note").textContent = s.workers.length + " workers, " +
      s.totals.nthreads + " threads";
  }

  document.getElementById("main").addEventListener("click", function (ev) {
    var b = ev.target.closest("button.toggle");
    if (!b) return;
    open[b.dataset.address] = !open[b.dataset.address];
    if (last) draw(last);
  });
  shoal.live(["status", "logs"], function (msg) {
    if (msg.logs) logs = msg.logs;
    if (msg.status) last = msg.status;
    if (last) draw(last);
  });
})();
