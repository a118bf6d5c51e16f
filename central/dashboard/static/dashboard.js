/* FedXray central dashboard: draws a run's per-round charts with uPlot and, while the run is active, fetches
   new rounds every 5 s (those requests say they are automatic, so they do not keep an idle session alive). */
(function () {
  "use strict";
  var PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#4d5562"];
  var charts = {};
  window.fedxrayCharts = charts;  // read by the browser tests: charts[name].data[0] are the rounds drawn

  function bestLine(best) {
    return {
      hooks: {
        draw: [function (u) {
          if (!best) { return; }
          var x = u.valToPos(best, "x", true);
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#15803d";
          ctx.setLineDash([6, 4]);
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.restore();
        }]
      }
    };
  }

  function yRange(kind) {
    if (kind === "fraction" || kind === "AUROC") { return [0, 1]; }  // proportions on their whole scale
    return function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; };  // from zero
  }

  function options(el, chart, data) {
    return {
      width: Math.max(280, el.clientWidth),
      height: 230,
      scales: { x: { time: false }, y: { range: yRange(chart.y) } },
      axes: [{ label: "Round", incrs: [1, 2, 5, 10, 20, 50, 100] }, { label: chart.y, size: 60 }],
      series: [{ label: "Round" }].concat(chart.series.map(function (s, i) {
        return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true,
                 points: { show: data.rounds.length <= 40, size: 6 } };
      })),
      plugins: [bestLine(data.best_round)],
      legend: { live: true }
    };
  }

  var shownRounds = null;

  function render(data) {
    if (shownRounds !== null && data.rounds.length !== shownRounds) {
      document.body.dispatchEvent(new CustomEvent("rounds-changed"));
    }
    shownRounds = data.rounds.length;
    var els = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var name = el.getAttribute("data-chart");
      var chart = data.charts[name];
      if (!chart) { continue; }
      el.setAttribute("data-points", String(data.rounds.length));
      if (!chart.series.length || !data.rounds.length) {
        if (!el.querySelector(".no-values")) {
          el.innerHTML = '<p class="no-values">No values yet.</p>';
        }
        continue;
      }
      var rows = [data.rounds].concat(chart.series.map(function (s) { return s.values; }));
      var existing = charts[name];
      if (existing && existing.series.length === chart.series.length + 1 && existing._best === data.best_round) {
        existing.setData(rows);
      } else {
        if (existing) { existing.destroy(); }
        el.innerHTML = "";
        var plot = new uPlot(options(el, chart, data), rows, el);
        plot._best = data.best_round;
        charts[name] = plot;
      }
    }
    var none = document.getElementById("no-rounds");
    if (none && data.rounds.length) { none.hidden = true; }
  }

  function summary(s) {
    if (!s) { return; }
    var fields = { "run-status": s.status, "run-rounds": String(s.rounds_done), "run-flower": s.flower || "",
                   "run-message": s.message || "" };
    Object.keys(fields).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.textContent !== fields[id]) {
        el.textContent = fields[id];
        if (id === "run-status") { el.className = "badge status-" + s.status; }
      }
    });
  }

  function start() {
    var src = document.getElementById("chart-data");
    if (!src || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(src.textContent);
    render(data);
    window.fedxrayChartsDrawnAt = performance.now();  // ms since the page was asked for (benchmarks read it)
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (name) {
        var el = document.getElementById("chart-" + name);
        if (el) { charts[name].setSize({ width: Math.max(280, el.clientWidth), height: 230 }); }
      });
    });
    if (src.getAttribute("data-live") !== "1") { return; }
    var timer = setInterval(function () {
      fetch(src.getAttribute("data-url"), { headers: { "X-Dashboard-Poll": "1" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { clearInterval(timer); window.location.reload(); return null; }
          return r.ok ? r.json() : null;
        })
        .then(function (next) {
          if (!next) { return; }
          render(next);
          summary(next.summary);
          if (["finished", "failed", "stopped"].indexOf(next.status) >= 0) { clearInterval(timer); }
        })
        .catch(function () { /* the central is restarting: try again at the next tick */ });
    }, 5000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
