/* The profile: a flame graph (plotly icicle) of the sampled stacks of the
 * tasks run on the workers; by function, over a recent window. */
"use strict";
(function () {
  document.getElementById("main").innerHTML =
    "<div class=controls>function <input id=key placeholder='all (or e.g. inc)' size=18>" +
    " over the last <select id=seconds><option value=10>10 s</option><option value=60 selected>1 min</option>" +
    "<option value=600>10 min</option><option value=0>everything kept</option></select>" +
    " <button id=refresh type=button>refresh</button> <label><input id=auto type=checkbox checked> every 5 s</label></div>" +
    shoal.card("flame", "Profile of the tasks", 560);
  var last = null;

  function draw(p) {
    var el = document.getElementById("flame");
    document.getElementById("flame-note").textContent = p.count + " samples";
    if (!p.count) {
      Plotly.purge(el);
      el.innerHTML = "<div class=empty>no samples: no task ran in this window</div>";
      return;
    }
    if (el.querySelector(".empty")) el.innerHTML = "";
    var f = p.flame;
    Plotly.react(el, [{type: "icicle", ids: f.ids, labels: f.labels, parents: f.parents, values: f.values,
      branchvalues: "total", customdata: f.hover, tiling: {orientation: "v", flip: "y"}, maxdepth: 12,
      hovertemplate: "<b>%{label}</b><br>%{customdata}<br>%{value} samples (%{percentRoot:.1%})<extra></extra>",
      marker: {colors: f.labels.map(function (l, i) { return i ? shoal.colour(l) : shoal.css("--idle"); })},
      root: {color: shoal.css("--panel")}}],
      shoal.layout({margin: {l: 4, r: 4, t: 4, b: 4}}), shoal.config);
  }

  function refresh() {
    var key = document.getElementById("key").value.trim();
    var seconds = document.getElementById("seconds").value;
    shoal.api("api/profile?seconds=" + seconds + (key ? "&key=" + encodeURIComponent(key) : ""))
      .then(function (p) { last = p; draw(p); });
  }
  document.getElementById("refresh").addEventListener("click", refresh);
  document.getElementById("key").addEventListener("change", refresh);
  document.getElementById("seconds").addEventListener("change", refresh);
  setInterval(function () { if (document.getElementById("auto").checked) refresh(); }, 5000);
  shoal.live(["status"], function () {});
  shoal.onTheme(function () { if (last) draw(last); });
  refresh();
})();
