(function () {
  "use strict";
  // Draws the report's charts as SVG from the JSON in #apf-data. Text only ever goes in
  // through textContent, never as markup. When done, <body> says how many model charts were
  // drawn (data-charts-drawn) and how many failed (data-chart-errors), for people and tests.
  var NS = "http://www.w3.org/2000/svg";
  var W = 640;
  var M = { l: 58, r: 18, t: 24, b: 26 };
  var body = document.body;
  var failures = [];

  function fail(where, err) {
    failures.push(where + ": " + (err && err.message ? err.message : String(err)));
    body.setAttribute("data-chart-errors", String(failures.length));
  }
  window.addEventListener("error", function (e) { fail("page", e.error || e.message); });

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function label(parent, x, y, text, cls, anchor) {
    var node = el("text", { x: x, y: y, "class": cls, "text-anchor": anchor || "start" }, parent);
    node.textContent = text;
    return node;
  }

  function hint(node, text) {
    el("title", {}, node).textContent = text;
  }

  function niceStep(max, n) {
    var raw = max / n;
    if (!(raw > 0)) { return 1; }
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  }

  function timeStep(duration) {
    var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];
    for (var i = 0; i < steps.length; i++) {
      if (duration / steps[i] <= 8) { return steps[i]; }
    }
    return 86400 * Math.max(1, Math.ceil(duration / 86400 / 8));
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function fmtTime(s) {
    s = Math.round(s);
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m" + (s % 60 ? pad(s % 60) + "s" : ""); }
    var m = Math.floor(s / 60) % 60;
    return Math.floor(s / 3600) + "h" + (m ? pad(m) + "m" : "");
  }

  function fmtUsd(v) {
    if (v === 0) { return "$0"; }
    if (v >= 1) { return "$" + v.toFixed(2); }
    var digits = Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(v))));
    return "$" + v.toFixed(digits).replace(/0+$/, "").replace(/\.$/, "");
  }

  function fmtCount(v) { return String(Math.round(v)); }

  // Axes, grid and ticks; returns the scales and the plot's box.
  function frame(box, o) {
    var h = o.height;
    var w = o.width || W;
    var svg = el("svg", { viewBox: "0 0 " + w + " " + h, role: "img" }, null);
    var pw = w - M.l - M.r;
    var ph = h - M.t - M.b - (o.below || 0);
    var f = {
      svg: svg, pw: pw, ph: ph, top: M.t, bottom: M.t + ph, left: M.l, right: M.l + pw,
      x: function (t) { return M.l + Math.max(0, Math.min(1, t / o.duration)) * pw; },
      y: function (v) { return M.t + ph - Math.max(0, Math.min(1, v / o.ymax)) * ph; }
    };
    label(svg, M.l, 15, o.title, "title");
    var ys = Math.max(o.minStep || 0, niceStep(o.ymax, 4));
    for (var i = 0; i * ys <= o.ymax * 1.0001; i++) {
      var yy = f.y(i * ys);
      el("line", { x1: f.left, x2: f.right, y1: yy, y2: yy, "class": "grid-line" }, svg);
      label(svg, f.left - 6, yy + 3, o.yfmt(i * ys), "tick", "end");
    }
    var ts = timeStep(o.duration);
    var axisY = f.bottom + (o.below || 0);
    for (var j = 0; j * ts <= o.duration * 1.0001; j++) {
      var xx = f.x(j * ts);
      el("line", { x1: xx, x2: xx, y1: axisY, y2: axisY + 4, "class": "axis" }, svg);
      label(svg, xx, axisY + 15, fmtTime(j * ts), "tick", "middle");
    }
    var axes = el("g", { "class": "axis" }, svg);
    el("path", { d: "M" + f.left + "," + f.top + "V" + axisY + "H" + f.right }, axes);
    box.appendChild(svg);
    return f;
  }

  function stepPath(pts, f) {
    var d = "";
    for (var i = 0; i < pts.length; i++) {
      var x = f.x(pts[i][0]).toFixed(1);
      var y = f.y(pts[i][1]).toFixed(1);
      d += i === 0 ? "M" + x + "," + y : "H" + x + "V" + y;
    }
    return d;
  }

  // A straight line, for spend known only at its ends: a step would claim it all came at once.
  function linePath(pts, f) {
    return pts.map(function (p, i) {
      return (i === 0 ? "M" : "L") + f.x(p[0]).toFixed(1) + "," + f.y(p[1]).toFixed(1);
    }).join("");
  }

  function spendPath(m, pts, f) {
    return m.spend_estimated ? linePath(pts, f) : stepPath(pts, f);
  }

  function valueAt(pts, t) {
    var v = 0;
    for (var i = 0; i < pts.length && pts[i][0] <= t; i++) { v = pts[i][1]; }
    return v;
  }

  function ejectLine(f, m, bottom) {
    if (!m.eject) { return; }
    var x = f.x(m.eject.t);
    var g = el("g", {}, f.svg);
    el("line", { x1: x, x2: x, y1: f.top, y2: bottom, "class": "eject" }, g);
    var right = x > f.left + f.pw * 0.7;
    label(g, right ? x - 4 : x + 4, f.top + 10, "ejected at " + fmtTime(m.eject.t),
      "eject-label", right ? "end" : "start");
    hint(g, m.eject.label);
  }

  function drawSpend(box, m, data) {
    var most = m.spend.reduce(function (a, p) { return Math.max(a, p[1]); }, 0);
    var ymax = Math.max(m.budget, most) * 1.15 || 0.01;
    var title = "spend: " + m.spent_label + " of " + m.budget_label +
      (m.spend_estimated ? " (no history: start and last reading only)" : "");
    var f = frame(box, { height: 190, ymax: ymax, yfmt: fmtUsd, duration: data.duration_s, title: title });
    var by = f.y(m.budget);
    el("line", { x1: f.left, x2: f.right, y1: by, y2: by, "class": "budget" }, f.svg);
    label(f.svg, f.right - 2, by - 4, "budget " + m.budget_label, "budget-label", "end");
    if (m.spend.length) {
      var cls = "s-" + m.status;
      var line = spendPath(m, m.spend, f);
      var first = m.spend[0];
      el("path", { d: line + "V" + f.y(0).toFixed(1) + "H" + f.x(first[0]).toFixed(1) + "Z",
        "class": "area " + cls }, f.svg);
      var path = el("path", { d: line, "class": "line " + cls + (m.spend_estimated ? " estimated" : "") }, f.svg);
      hint(path, m.alias + ": " + m.spent_label + " of " + m.budget_label);
      var last = m.spend[m.spend.length - 1];
      var dot = el("circle", { cx: f.x(last[0]), cy: f.y(last[1]), r: 3, "class": "end-dot " + cls }, f.svg);
      hint(dot, m.status_label + " at " + fmtTime(last[0]) + ", " + m.spent_label);
    } else {
      label(f.svg, f.left + f.pw / 2, f.top + f.ph / 2, "not started", "empty", "middle");
    }
    ejectLine(f, m, f.bottom);
  }

  function drawEvents(box, m, data) {
    var lanes = [
      ["tool calls", m.tool_calls, "mark-tool"],
      ["snapshots", m.snapshots, "mark-snap"],
      ["errors", m.errors, "mark-err"]
    ];
    var laneH = 12;
    var below = lanes.length * laneH + 8;
    var ymax = Math.max(1, m.events_total) * 1.15;
    var f = frame(box, {
      height: 170 + below, below: below, ymax: ymax, yfmt: fmtCount, minStep: 1,
      duration: data.duration_s, title: "events: " + m.events_total + " in all"
    });
    if (m.events.length) {
      var path = el("path", { d: stepPath(m.events, f), "class": "line s-" + m.status }, f.svg);
      hint(path, m.alias + ": " + m.events_total + " events");
    } else {
      label(f.svg, f.left + f.pw / 2, f.top + f.ph / 2, "no events", "empty", "middle");
    }
    var w = Math.max(1.5, f.pw / 300);
    lanes.forEach(function (lane, i) {
      var y0 = f.bottom + 6 + i * laneH;
      label(f.svg, f.left - 6, y0 + 8, lane[0], "lane", "end");
      var most = lane[1].reduce(function (a, p) { return Math.max(a, p[1]); }, 1);
      lane[1].forEach(function (p) {
        var r = el("rect", {
          x: f.x(p[0]).toFixed(1), y: y0, width: w.toFixed(1), height: laneH - 3,
          "class": lane[2], opacity: (0.35 + 0.65 * Math.min(1, p[1] / most)).toFixed(2)
        }, f.svg);
        hint(r, p[1] + " " + lane[0] + " at " + fmtTime(p[0]));
      });
    });
    ejectLine(f, m, f.bottom + below - 2);
  }

  function drawOverview(box, data) {
    var series = data.models.map(function (m) {
      return m.spend.map(function (p) { return [p[0], m.budget > 0 ? p[1] / m.budget * 100 : 0]; });
    });
    var most = series.reduce(function (a, s) {
      return s.reduce(function (b, p) { return Math.max(b, p[1]); }, a);
    }, 0);
    var ymax = Math.max(100, most) * 1.08;
    var f = frame(box, {
      width: 1240, height: 300, ymax: ymax, duration: data.duration_s, title: "spend as a share of each budget",
      yfmt: function (v) { return Math.round(v) + "%"; }
    });
    var y100 = f.y(100);
    el("line", { x1: f.left, x2: f.right, y1: y100, y2: y100, "class": "budget" }, f.svg);
    label(f.svg, f.right - 2, y100 - 4, "budget", "budget-label", "end");
    var few = data.models.length <= 12;
    data.models.forEach(function (m, i) {
      var pts = series[i];
      if (!pts.length) { return; }
      var cls = "p" + (i % 10);
      var path = el("path", {
        d: spendPath(m, pts, f), "class": "line " + cls + (m.spend_estimated ? " estimated" : "")
      }, f.svg);
      hint(path, m.alias + ": " + m.spent_label + " of " + m.budget_label + " (" + m.status_label + ")");
      var last = pts[pts.length - 1];
      if (few) {
        label(f.svg, Math.min(f.x(last[0]) + 4, f.right - 2), f.y(last[1]) - 3, m.alias, "legend", "end");
      }
      if (m.eject) {
        var x = f.x(m.eject.t);
        var y = f.y(valueAt(pts, m.eject.t));
        var g = el("g", { "class": "eject-x" }, f.svg);
        el("line", { x1: x - 4, y1: y - 4, x2: x + 4, y2: y + 4 }, g);
        el("line", { x1: x - 4, y1: y + 4, x2: x + 4, y2: y - 4 }, g);
        hint(g, m.alias + ": " + m.eject.label);
      }
    });
    var keys = document.createElement("p");
    keys.className = "keys";
    data.models.forEach(function (m, i) {
      var k = document.createElement("span");
      k.className = "key p" + (i % 10);
      k.textContent = m.alias;
      keys.appendChild(k);
    });
    box.appendChild(keys);
  }

  var data;
  try {
    data = JSON.parse(document.getElementById("apf-data").textContent);
  } catch (e) {
    fail("data", e);
    body.setAttribute("data-charts-drawn", "0");
    return;
  }
  var cards = document.querySelectorAll("article.model");
  var drawn = 0;
  data.models.forEach(function (m, i) {
    var card = cards[i];
    try {
      if (!card) { throw new Error("no card for " + m.alias); }
      drawSpend(card.querySelector(".chart.spend"), m, data);
      drawEvents(card.querySelector(".chart.events"), m, data);
      card.setAttribute("data-drawn", "true");
      drawn += 1;
    } catch (e) {
      fail(m.alias, e);
      if (card) {
        var p = document.createElement("p");
        p.className = "failed";
        p.textContent = "This chart could not be drawn: " + e;
        card.appendChild(p);
      }
    }
  });
  try {
    drawOverview(document.getElementById("overview"), data);
    body.setAttribute("data-overview-drawn", "true");
  } catch (e) {
    fail("overview", e);
  }
  body.setAttribute("data-charts-drawn", String(drawn));
}());
