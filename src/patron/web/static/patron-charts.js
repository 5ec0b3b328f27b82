/* Patron dashboard charts: draws every <canvas data-chart="ID" data-kind="KIND"> from the
 * JSON spec in <script type="application/json" id="ID"> with the bundled Chart.js
 * (static/vendor/chart.umd.min.js, no CDN). Specs are data only (built by
 * patron/web/charts.py, labels already translated); no inline scripts or handlers, so a
 * strict Content-Security-Policy holds. Each canvas carries an aria-label and the page a
 * data table beside it: the text alternative. */
(function () {
  "use strict";

  var INK = "#1f2937";
  var GRID = "rgba(0, 0, 0, 0.08)";
  var US = "#2563eb";
  var OTHERS = ["#9ca3af", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444"];
  var SEGMENT_COLOURS = {
    champions: "#1a7f37",
    loyal: "#2e9d57",
    potential_loyalists: "#7fbf7b",
    new: "#3b82f6",
    promising: "#93c5fd",
    need_attention: "#eab308",
    about_to_sleep: "#f59e0b",
    at_risk: "#f97316",
    cant_lose: "#c0392b",
    hibernating: "#9ca3af",
    lost: "#6b7280"
  };

  function axis(title, extra) {
    var a = {
      title: { display: Boolean(title), text: title || "", color: INK },
      grid: { color: GRID },
      ticks: { color: INK }
    };
    for (var k in extra || {}) {
      if (Object.prototype.hasOwnProperty.call(extra, k)) a[k] = extra[k];
    }
    return a;
  }

  function base(spec, scales, extra) {
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: scales,
      plugins: { legend: { display: true, labels: { color: INK } } }
    };
    for (var k in extra || {}) {
      if (Object.prototype.hasOwnProperty.call(extra, k)) options[k] = extra[k];
    }
    return options;
  }

  // NPS trend: the value line and its 95% interval as a filled band (low → high).
  function lineCi(spec) {
    return {
      type: "line",
      data: {
        labels: spec.labels,
        datasets: [
          {
            label: spec.band,
            data: spec.high,
            borderWidth: 0,
            pointRadius: 0,
            fill: "+1",
            backgroundColor: "rgba(37, 99, 235, 0.15)",
            spanGaps: true
          },
          {
            label: spec.band + " ",
            data: spec.low,
            borderWidth: 0,
            pointRadius: 0,
            fill: false,
            spanGaps: true
          },
          {
            label: spec.value.label,
            data: spec.value.data,
            borderColor: US,
            backgroundColor: US,
            tension: 0.2,
            spanGaps: true
          }
        ]
      },
      options: base(spec, {
        x: axis(spec.x),
        y: axis(spec.y, { suggestedMin: spec.min, suggestedMax: spec.max })
      }, {
        plugins: {
          legend: {
            labels: {
              color: INK,
              filter: function (item) { return item.datasetIndex !== 1; }
            }
          }
        }
      })
    };
  }

  function histogram(spec) {
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [{
          label: spec.series.label,
          data: spec.series.data,
          backgroundColor: US,
          barPercentage: 1.0,
          categoryPercentage: 0.95
        }]
      },
      options: base(spec, { x: axis(spec.x), y: axis(spec.y, { beginAtZero: true }) })
    };
  }

  // Pareto: revenue share per customer decile (bars), cumulative share (line) and the
  // 80% mark (a flat line on the same axis).
  function pareto(spec) {
    var mark = spec.labels.map(function () { return spec.mark.value; });
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [
          {
            type: "line",
            label: spec.line.label,
            data: spec.line.data,
            borderColor: "#c0392b",
            backgroundColor: "#c0392b",
            tension: 0.2,
            order: 0
          },
          {
            type: "line",
            label: spec.mark.label,
            data: mark,
            borderColor: "#6b7280",
            borderDash: [6, 4],
            pointRadius: 0,
            borderWidth: 1,
            order: 1
          },
          {
            type: "bar",
            label: spec.bars.label,
            data: spec.bars.data,
            backgroundColor: US,
            order: 2
          }
        ]
      },
      options: base(spec, { x: axis(spec.x), y: axis(spec.y, { min: 0, max: 100 }) })
    };
  }

  // The RFM axes: the scores 1–5 only (the cells sit on them, the axis runs 0.5–5.5).
  function scores(scale) {
    scale.ticks = [1, 2, 3, 4, 5].map(function (v) { return { value: v }; });
  }

  // RFM: a bubble per R × FM cell, area ∝ customers, coloured by segment.
  function rfm(spec) {
    var top = Math.max(spec.max, 1);
    return {
      type: "bubble",
      data: {
        datasets: spec.series.map(function (s) {
          return {
            label: s.label,
            data: s.data.map(function (c) {
              return { x: c.x, y: c.y, r: c.n ? 3 + 22 * Math.sqrt(c.n / top) : 0, n: c.n };
            }),
            backgroundColor: SEGMENT_COLOURS[s.key] || "#9ca3af"
          };
        })
      },
      options: base(spec, {
        x: axis(spec.x, { min: 0.5, max: 5.5, afterBuildTicks: scores }),
        y: axis(spec.y, { min: 0.5, max: 5.5, afterBuildTicks: scores })
      }, {
        plugins: {
          legend: { position: "bottom", labels: { color: INK, boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var p = ctx.raw;
                return ctx.dataset.label + " R" + p.y + " FM" + p.x + ": " + p.n;
              }
            }
          }
        }
      })
    };
  }

  // Satisfaction gaps: diverging horizontal bars, each coloured by its level.
  function gaps(spec) {
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [{
          label: spec.series.label,
          data: spec.series.data,
          backgroundColor: spec.series.colours
        }]
      },
      // Every attribute keeps its label (long ones come as lines): no skipping.
      options: base(spec, { x: axis(spec.x), y: axis("", { ticks: { color: INK, autoSkip: false } }) }, {
        indexAxis: "y",
        plugins: {
          legend: {
            labels: {
              color: INK,
              generateLabels: function () {
                return spec.legend.map(function (l) {
                  return { text: l.label, fillStyle: l.colour, strokeStyle: l.colour };
                });
              }
            },
            onClick: null
          },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.formattedValue + " · " + spec.series.levels[ctx.dataIndex];
              }
            }
          }
        }
      })
    };
  }

  // Competitor comparison: grouped bars per attribute, our store first and highlighted.
  function compare(spec) {
    var other = 0;
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (s) {
          var colour = s.us ? US : OTHERS[other++ % OTHERS.length];
          return { label: s.label, data: s.data, backgroundColor: colour };
        })
      },
      // Horizontal: attribute names (with "cost: lower is better") stay readable.
      options: base(spec, {
        x: axis(spec.y, { min: 0, max: 10 }),
        y: axis("", { ticks: { color: INK, autoSkip: false } })
      }, {
        indexAxis: "y"
      })
    };
  }

  var KINDS = {
    line_ci: lineCi,
    histogram: histogram,
    pareto: pareto,
    rfm: rfm,
    gaps: gaps,
    compare: compare
  };

  function draw(canvas) {
    var id = canvas.getAttribute("data-chart");
    var kind = canvas.getAttribute("data-kind");
    var source = id && document.getElementById(id);
    if (!source || !KINDS[kind] || typeof window.Chart === "undefined") return null;
    var spec;
    try {
      spec = JSON.parse(source.textContent);
    } catch (e) {
      return null;
    }
    var existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    return new window.Chart(canvas, KINDS[kind](spec));
  }

  function drawAll() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i++) draw(canvases[i]);
  }

  window.PatronCharts = { draw: draw, drawAll: drawAll };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
