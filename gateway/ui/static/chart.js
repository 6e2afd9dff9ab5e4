/* A small hand-written SVG line chart for Prometheus range results. No dependencies. */
"use strict";

(function (global) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 960, H = 360;
  const PAD = { left: 64, right: 16, top: 16, bottom: 36 };
  const MAX_SERIES = 12;

  function svgEl(name, attrs, text) {
    const el = document.createElementNS(NS, name);
    for (const k in attrs) el.setAttribute(k, String(attrs[k]));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /** 1234567 -> "1.23M"; 0.000123 -> "123µ": short y-axis labels. */
  function formatValue(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, s] of units) if (a >= f) return trim(v / f) + s;
    if (a >= 1e-3) return trim(v);
    return v.toExponential(2);
  }
  function trim(x) {
    return String(parseFloat(x.toPrecision(3)));
  }

  /** An axis label with as many decimals as the tick step needs (10.25 and 10.30, not 10.3 twice). */
  function formatTick(v, step) {
    const decimals = (x) => Math.max(0, Math.min(6, Math.ceil(-Math.log10(x) - 1e-9)));
    const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, s] of units) {
      if (Math.abs(v) >= f && step >= f / 1000) return (v / f).toFixed(decimals(step / f)) + s;
    }
    return v.toFixed(decimals(step));
  }

  /** Round numbers between lo and hi: about n ticks at 1/2/5 x 10^k. */
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return { ticks: ticks, step: step };
  }

  const TIME_STEPS = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];
  function timeTicks(start, end, n) {
    const raw = (end - start) / n;
    const step = TIME_STEPS.find((s) => s >= raw) || 86400 * Math.ceil(raw / 86400);
    const ticks = [];
    for (let t = Math.ceil(start / step) * step; t <= end; t += step) ticks.push(t);
    return { ticks: ticks, step: step };
  }
  function formatTime(t, step) {
    const d = new Date(t * 1000);
    const hh = String(d.getHours()).padStart(2, "0"), mm = String(d.getMinutes()).padStart(2, "0");
    if (step >= 86400) return (d.getMonth() + 1) + "/" + d.getDate();
    if (step >= 21600) return (d.getMonth() + 1) + "/" + d.getDate() + " " + hh + ":" + mm;
    return hh + ":" + mm;
  }

  /**
   * Draw series ([{label, points: [[unixSeconds, number], ...]}]) into svg over [start, end].
   * A gap longer than 2.5 steps breaks the line. Returns the number of points drawn.
   */
  function render(svg, series, opts) {
    while (svg.lastChild && svg.lastChild.nodeName !== "title") svg.removeChild(svg.lastChild);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const start = opts.start, end = opts.end, step = opts.step;
    const shown = series.slice(0, MAX_SERIES);
    let lo = Infinity, hi = -Infinity;
    for (const s of shown) for (const p of s.points) {
      if (isFinite(p[1])) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    }
    const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
    const grid = svgEl("g", { class: "grid" });
    svg.appendChild(grid);
    svg.__tm = null;
    if (lo === Infinity) {
      svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" },
        opts.message || "No data in this range"));
      return 0;
    }
    if (hi === lo) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }  // a flat line sits mid-chart
    const yt = niceTicks(lo, hi, 5);
    // Round the axis out to whole ticks, so the lines never touch the frame.
    const y0 = Math.floor(lo / yt.step + 1e-9) * yt.step, y1 = Math.ceil(hi / yt.step - 1e-9) * yt.step;
    if (yt.ticks[0] > y0 + 1e-12) yt.ticks.unshift(+y0.toPrecision(12));
    if (yt.ticks[yt.ticks.length - 1] < y1 - 1e-12) yt.ticks.push(+y1.toPrecision(12));
    const ys = y1 > y0 ? y1 - y0 : 1;
    const x = (t) => PAD.left + ((t - start) / (end - start)) * plotW;
    const y = (v) => PAD.top + plotH - ((v - y0) / ys) * plotH;

    for (const t of yt.ticks) {
      grid.appendChild(svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t) }));
      grid.appendChild(svgEl("text", { x: PAD.left - 6, y: y(t) + 4, "text-anchor": "end", class: "tick" }, formatTick(t, yt.step)));
    }
    const xt = timeTicks(start, end, 8);
    for (const t of xt.ticks) {
      grid.appendChild(svgEl("line", { x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom, class: "v" }));
      grid.appendChild(svgEl("text", { x: x(t), y: H - PAD.bottom + 18, "text-anchor": "middle", class: "tick" }, formatTime(t, xt.step)));
    }
    grid.appendChild(svgEl("rect", { x: PAD.left, y: PAD.top, width: plotW, height: plotH, class: "frame" }));

    let drawn = 0;
    shown.forEach((s, i) => {
      let d = "", prev = null, n = 0;
      const segments = [];  // [first point, count] of each unbroken run
      for (const p of s.points) {
        if (!isFinite(p[1])) { prev = null; continue; }
        const cmd = prev === null || p[0] - prev > step * 2.5 ? "M" : "L";
        if (cmd === "M") segments.push([p, 0]);
        segments[segments.length - 1][1] += 1;
        d += cmd + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        prev = p[0];
        n += 1;
      }
      if (!n) return;
      const cls = "s" + (i % MAX_SERIES);
      const path = svgEl("path", { d: d.trim(), class: "series " + cls, "data-points": n });
      path.appendChild(svgEl("title", {}, s.label));
      svg.appendChild(path);
      // A run of one point draws no line: mark it with a dot so it is seen.
      for (const [p, count] of segments) {
        if (count === 1) svg.appendChild(svgEl("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 3, class: "dot " + cls }));
      }
      drawn += n;
    });
    svg.__tm = { series: shown, x: x, y: y, start: start, end: end, step: step, plotW: plotW };
    addHover(svg);
    return drawn;
  }

  /** Nearest point of a series to time t (points are sorted), within 1.5 steps. */
  function nearest(points, t, step) {
    let lo = 0, hi = points.length - 1;
    if (hi < 0) return null;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (points[mid][0] < t) lo = mid; else hi = mid; }
    const best = Math.abs(points[lo][0] - t) <= Math.abs(points[hi][0] - t) ? points[lo] : points[hi];
    return Math.abs(best[0] - t) <= step * 1.5 && isFinite(best[1]) ? best : null;
  }

  /** A crosshair with each series' value at the pointer; one set of listeners per svg. */
  function addHover(svg) {
    const g = svgEl("g", { class: "hover", visibility: "hidden" });
    g.appendChild(svgEl("line", { class: "cross", y1: PAD.top, y2: H - PAD.bottom }));
    g.appendChild(svgEl("rect", { class: "tip", rx: 4 }));
    svg.appendChild(g);
    if (svg.__tmHover) return;
    svg.__tmHover = true;
    svg.addEventListener("mouseleave", () => {
      const h = svg.querySelector("g.hover");
      if (h) h.setAttribute("visibility", "hidden");
    });
    svg.addEventListener("mousemove", (ev) => {
      const st = svg.__tm, h = svg.querySelector("g.hover");
      if (!st || !h || !svg.getScreenCTM()) return;
      const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse());
      if (pt.x < PAD.left || pt.x > W - PAD.right) { h.setAttribute("visibility", "hidden"); return; }
      const t = st.start + ((pt.x - PAD.left) / st.plotW) * (st.end - st.start);
      const rows = [];
      st.series.forEach((s, i) => {
        const p = nearest(s.points, t, st.step);
        if (p) rows.push({ cls: "s" + i, text: formatValue(p[1]) + "  " + s.label, v: p[1] });
      });
      rows.sort((a, b) => b.v - a.v);
      for (const old of h.querySelectorAll("text")) old.remove();
      const cross = h.querySelector("line");
      cross.setAttribute("x1", pt.x); cross.setAttribute("x2", pt.x);
      const clip = (l) => (l.length > 90 ? l.slice(0, 89) + "…" : l);
      const lines = [new Date(t * 1000).toLocaleString()].concat(rows.map((r) => clip(r.text)));
      h.setAttribute("visibility", "visible");
      const texts = lines.map((line, i) => {
        const cls = i === 0 ? "tip-time" : "tip-row " + rows[i - 1].cls;
        const text = svgEl("text", { x: 0, y: PAD.top + 20 + 16 * i, class: cls }, line);
        h.appendChild(text);
        return text;
      });
      // Size the box to the text as drawn, and keep it inside the plot.
      const width = 16 + Math.max(...texts.map((tx) => tx.getComputedTextLength()));
      let left = pt.x + 12 + width > W ? pt.x - 12 - width : pt.x + 12;
      left = Math.max(2, left);
      for (const tx of texts) tx.setAttribute("x", left + 8);
      const rect = h.querySelector("rect");
      rect.setAttribute("x", left); rect.setAttribute("y", PAD.top + 4);
      rect.setAttribute("width", width); rect.setAttribute("height", 10 + 16 * lines.length);
    });
  }

  global.TMChart = { render: render, formatValue: formatValue, formatTick: formatTick, niceTicks: niceTicks, MAX_SERIES: MAX_SERIES };
})(window);
