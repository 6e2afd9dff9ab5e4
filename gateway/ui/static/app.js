/* The tenant page: alerts from /api/v1/alerts, capacity from the platform's recording rules
 * (/api/v1/query), services and their health from /api/v1/targets, a chart from /api/v1/query_range.
 *
 * Every request goes to the gateway's own Prometheus API with the credentials the browser
 * already holds; the gateway restricts each answer to this tenant's services. Data from
 * the API reaches the page as text nodes only (never as markup).
 */
"use strict";

(function () {
  const API = new URL("../api/v1/", window.location.href);
  const PREFERRED_METRICS = ["cpu_usage_user", "mem_used_percent", "disk_used_percent", "system_load1", "up"];
  const MAX_POINTS = 240;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      super((body && body.error) || "HTTP " + status);
      this.status = status; this.body = body; this.retryAfter = retryAfter;
    }
  }

  async function api(path, params) {
    const url = new URL(path, API);
    for (const [k, v] of params || []) url.searchParams.append(k, v);
    let resp;
    try {
      resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(0, null, null);
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok || !body || body.status !== "success") {
      const ra = parseFloat(resp.headers.get("Retry-After") || "");
      throw new ApiError(resp.ok ? 502 : resp.status, body, isFinite(ra) ? ra : null);
    }
    return body.data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function showError(err, where) {
    const e = err instanceof ApiError ? err : new ApiError(-1, { error: String(err) }, null);
    const info = window.TMErrors.explain(e.status, e.body, e.retryAfter);
    $("notice-title").textContent = info.title + (where ? " (" + where + ")" : "");
    $("notice-what").textContent = info.what;
    $("notice-todo").textContent = "What to do: " + info.todo;
    $("notice").dataset.kind = info.kind;
    const again = $("notice-signin");
    again.hidden = true;
    if (sso && (e.status === 401 || e.status === 403)) {
      // A Cloud Foundry sign-in ended or lost its access: sign in again, no key needed.
      $("notice-title").textContent = e.status === 401 ? "Your sign-in has ended" : "You no longer have access";
      $("notice-what").textContent = (e.body && e.body.error) || "";
      $("notice-todo").textContent = e.status === 401
        ? "Sign in again with your Cloud Foundry account."
        : "Ask a Space Manager or Org Manager for a role in the instance's space, then sign in again.";
      again.href = "instances/" + encodeURIComponent(sso.instance);
      again.hidden = false;
      ssoEnded = true;
      $("signout").hidden = true;  // nothing left to sign out of here
    }
    $("notice").hidden = false;
  }
  function clearError() { $("notice").hidden = true; }

  function every(seconds) {
    return seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t) || t <= 0) return "never";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  /** Group node targets into services (one per CF service instance / Aiven service). */
  function groupServices(targets) {
    const byKey = new Map();
    for (const t of targets) {
      const l = t.labels || {};
      const key = l.cf_service_instance_guid || l.aiven_service_name || l.job || "?";
      if (!byKey.has(key)) byKey.set(key, { key: key, labels: l, nodes: [] });
      byKey.get(key).nodes.push(t);
    }
    const services = Array.from(byKey.values());
    services.sort((a, b) => name(a).localeCompare(name(b)));
    return services;
  }
  function name(svc) {
    return svc.labels.cf_service_instance_name || svc.labels.aiven_service_name || svc.key;
  }

  const SCOPE_TEXT = {
    space: "space plan: you see the services of your space",
    org: "org plan: you see the services of every space in your organisation",
  };
  // Set when the page was opened with a Cloud Foundry sign-in (dashboard SSO), not a key.
  let sso = null;
  // Set once that sign-in has ended or lost its access: the gateway has cleared the session
  // cookie, so every further call would get the service-key 401 and a browser password prompt.
  let ssoEnded = false;
  async function loadSession() {
    try {
      const resp = await fetch(new URL("session", window.location.href), { credentials: "same-origin" });
      if (!resp.ok) return;
      const who = await resp.json();
      sso = who.sso || null;
      $("who").textContent = "Signed in as " + (who.username || "?") + (sso ? " with Cloud Foundry" : "") +
        (who.scope ? " · " + (SCOPE_TEXT[who.scope] || who.scope + " plan") : "");
      $("signout").hidden = !sso;
      if (sso) {
        $("grafana-creds").textContent = "use the username and password of a service key " +
          "(cf create-service-key INSTANCE KEY, then cf service-key INSTANCE KEY): your Cloud Foundry sign-in is for this page only";
      }
      $("sso-status").hidden = !sso;
      if (sso) {
        const checked = new Date(sso.checked_at * 1000).toISOString();
        $("sso-status").textContent = "Your access to this service instance was last checked with Cloud Foundry " +
          ago(checked) + " (checked again every " + every(sso.recheck_seconds) + ").";
        $("sso-status").dataset.checkedAt = String(sso.checked_at);
      }
    } catch (e) { /* the services call reports connection problems */ }
  }

  async function loadDashboards() {
    try {
      const resp = await fetch(new URL("dashboards/", window.location.href), { credentials: "same-origin" });
      if (!resp.ok) return;
      const list = (await resp.json()).dashboards || [];
      $("dashboards").replaceChildren(...list.map((n) =>
        el("li", {}, el("a", { href: "dashboards/" + encodeURIComponent(n), download: n }, n))));
    } catch (e) { /* optional */ }
  }

  function renderScope(services) {
    const orgs = new Set(), spaces = new Set();
    for (const s of services) {
      if (s.labels.cf_organization_name) orgs.add(s.labels.cf_organization_name);
      if (s.labels.cf_space_name) spaces.add(s.labels.cf_organization_name + " / " + s.labels.cf_space_name);
    }
    $("scope").textContent = services.length === 0
      ? "No services are scraped for these credentials yet."
      : services.length + " service" + (services.length === 1 ? "" : "s") + " in " +
        Array.from(spaces).sort().join(", ");
  }

  function renderServices(services) {
    const root = $("services");
    root.replaceChildren();
    if (services.length === 0) {
      root.appendChild(el("p", { class: "empty" },
        "Nothing to show yet. Services appear here a few minutes after they are created in your space " +
        "(organisation, for an org plan), once the platform has enabled metrics for them."));
      return;
    }
    for (const svc of services) {
      const up = svc.nodes.filter((n) => n.health === "up").length;
      const state = up === svc.nodes.length ? "up" : up === 0 ? "down" : "degraded";
      const l = svc.labels;
      const rows = svc.nodes
        .slice()
        .sort((a, b) => nodeName(a).localeCompare(nodeName(b)))
        .map((n) => el("tr", { class: "node", "data-health": n.health || "unknown" },
          el("td", { class: "node-name", title: (n.labels && n.labels.instance) || "" }, nodeName(n)),
          el("td", {}, el("span", { class: "pill " + (n.health || "unknown") }, n.health || "unknown")),
          el("td", { title: n.lastScrape || "" }, ago(n.lastScrape)),
          el("td", {}, n.lastScrapeDuration !== undefined ? (n.lastScrapeDuration * 1000).toFixed(0) + " ms" : "–"),
          el("td", { class: "error" }, n.lastError || "")));
      const card = el("article", { class: "service " + state, "data-service": name(svc), "data-guid": l.cf_service_instance_guid || "" },
        el("header", {},
          el("h3", {}, name(svc)),
          el("span", { class: "pill " + state }, up + "/" + svc.nodes.length + " nodes up")),
        el("p", { class: "meta" },
          [l.aiven_service_type, l.aiven_plan, l.aiven_cloud].filter(Boolean).join(" · ") +
          (l.cf_space_name ? " — space " + l.cf_space_name : "") +
          (l.cf_organization_name ? ", org " + l.cf_organization_name : "")),
        el("p", { class: "meta muted" }, "Aiven service " + (l.aiven_service_name || "?")),
        el("table", { class: "nodes" },
          el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "Health"), el("th", {}, "Last scrape"),
            el("th", {}, "Took"), el("th", {}, "Last error"))),
          el("tbody", {}, ...rows)));
      root.appendChild(card);
    }
  }
  // instance (ip:port) -> Aiven node name, from the "host" tag Aiven puts on every series.
  let nodeNames = new Map();
  function nodeName(t) {
    const l = t.labels || {};
    const aiven = nodeNames.get(l.instance);
    if (aiven) return aiven;
    return l.host || l.instance || t.scrapeUrl || "?";
  }
  async function loadNodeNames() {
    try {
      const data = await api("query", [["query", "group by (instance, host) (system_uptime)"]]);
      nodeNames = new Map((data.result || []).map((r) => [r.metric.instance, r.metric.host]));
    } catch (e) { /* only cosmetic: the address is shown instead */ }
  }

  // --- Alerts: /api/v1/alerts, already restricted by the gateway to this tenant's instances.
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  const STATE_RANK = { firing: 0, pending: 1 };
  function alertService(a) {
    const l = a.labels || {};
    return l.cf_service_instance_name || l.aiven_service_name || "(no service)";
  }
  function sinceText(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t) || t <= 0) return "";
    return "since " + new Date(t).toLocaleString() + " (" + ago(iso) + ")";
  }

  /** Firing and pending alerts, grouped per service; every value goes in as text. */
  function renderAlerts(alerts) {
    const active = alerts.filter((a) => a.state === "firing" || a.state === "pending");
    const root = $("alerts");
    root.replaceChildren();
    const firing = active.filter((a) => a.state === "firing").length;
    $("alerts-status").textContent = active.length === 0
      ? "No alerts: every rule is quiet for your services."
      : firing + " firing, " + (active.length - firing) + " pending.";
    $("alerts-section").dataset.firing = String(firing);
    const groups = new Map();
    for (const a of active) {
      const key = alertService(a);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(a);
    }
    for (const key of Array.from(groups.keys()).sort((x, y) => x.localeCompare(y))) {
      const list = groups.get(key).slice().sort((x, y) =>
        (STATE_RANK[x.state] - STATE_RANK[y.state]) ||
        ((SEVERITY_RANK[(x.labels || {}).severity] ?? 9) - (SEVERITY_RANK[(y.labels || {}).severity] ?? 9)) ||
        String((x.labels || {}).alertname).localeCompare(String((y.labels || {}).alertname)));
      const items = list.map((a) => {
        const l = a.labels || {}, an = a.annotations || {};
        const severity = String(l.severity || "none");
        return el("li", { class: "alert " + a.state, "data-alertname": String(l.alertname || ""),
                          "data-state": a.state, "data-severity": severity },
          el("div", { class: "alert-head" },
            el("span", { class: "pill sev-" + severity.replace(/[^a-z]/g, "") }, severity),
            el("span", { class: "pill state-" + a.state }, a.state),
            el("strong", { class: "alert-summary" }, String(an.summary || l.alertname || "Alert"))),
          an.description ? el("p", { class: "alert-description" }, String(an.description)) : null,
          el("p", { class: "alert-meta muted", title: String(a.activeAt || "") },
            String(l.alertname || "") + (l.instance ? " · node " + l.instance : "") +
            (a.activeAt ? " · " + sinceText(a.activeAt) : "")));
      });
      root.appendChild(el("article", { class: "alert-group", "data-service": key },
        el("h3", {}, key), el("ul", { class: "alert-list" }, ...items)));
    }
  }

  async function loadAlerts() {
    try {
      const data = await api("alerts");
      renderAlerts(data.alerts || []);
      $("alerts").classList.remove("stale");
    } catch (err) {
      $("alerts").classList.add("stale");
      $("alerts-status").textContent = "Alerts could not be loaded: see the message above.";
      throw err;
    }
  }

  // --- Capacity: the platform's recording rules (one cheap series per service).
  const CAPACITY = [
    { key: "disk", query: "aiven_service:disk_used_percent:max", label: "Disk used" },
    { key: "days", query: "aiven_service:disk_days_until_full:min", label: "Days to full" },
    { key: "heap", query: "aiven_service:jvm_heap_used_percent:max", label: "JVM heap" },
  ];
  function capacityText(key, value) {
    if (key === "days") {
      if (value === undefined) return "not filling";
      if (value >= 365) return "more than a year";
      return value.toFixed(value < 10 ? 1 : 0) + " days";
    }
    return value === undefined ? "no data yet" : value.toFixed(1) + " %";
  }
  function capacityLevel(key, value) {
    if (value === undefined) return "ok";
    if (key === "disk") return value >= 90 ? "bad" : value >= 85 ? "warn" : "ok";
    if (key === "days") return value < 4 ? "bad" : value < 14 ? "warn" : "ok";
    return value >= 85 ? "bad" : value >= 75 ? "warn" : "ok";
  }

  async function loadCapacity() {
    const answers = await Promise.all(CAPACITY.map((c) => api("query", [["query", c.query]])));
    const byService = new Map();
    answers.forEach((data, i) => {
      for (const r of data.result || []) {
        const m = r.metric || {};
        const svc = m.cf_service_instance_name || m.aiven_service_name || "?";
        if (!byService.has(svc)) byService.set(svc, { labels: m, values: {} });
        byService.get(svc).values[CAPACITY[i].key] = Number(r.value[1]);
      }
    });
    const root = $("capacity");
    root.replaceChildren();
    if (byService.size === 0) {
      root.appendChild(el("p", { class: "empty" },
        "No capacity figures yet: they appear a few minutes after the first scrapes of your search services."));
      return;
    }
    for (const svc of Array.from(byService.keys()).sort((x, y) => x.localeCompare(y))) {
      const { labels, values } = byService.get(svc);
      const rows = CAPACITY.map((c) => {
        const v = isFinite(values[c.key]) ? values[c.key] : undefined;
        return el("div", { class: "figure " + capacityLevel(c.key, v), "data-figure": c.key },
          el("span", { class: "figure-label muted" }, c.label),
          el("span", { class: "figure-value" }, capacityText(c.key, v)));
      });
      root.appendChild(el("article", { class: "capacity-card", "data-service": svc },
        el("h3", {}, svc),
        el("p", { class: "meta muted" }, [labels.aiven_service_type, labels.aiven_plan].filter(Boolean).join(" · ")),
        el("div", { class: "figures" }, ...rows)));
    }
  }

  function renderServiceOptions(services) {
    const sel = $("service");
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "All services"));
    for (const s of services) {
      if (s.labels.aiven_service_name) sel.appendChild(el("option", { value: s.labels.aiven_service_name }, name(s)));
    }
    if (Array.from(sel.options).some((o) => o.value === keep)) sel.value = keep;
  }

  async function loadServices() {
    const [data] = await Promise.all([api("targets", [["state", "active"]]), loadNodeNames()]);
    const services = groupServices(data.activeTargets || []);
    renderScope(services);
    renderServices(services);
    renderServiceOptions(services);
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    return services;
  }

  async function loadMetricNames() {
    const names = await api("label/__name__/values");
    const sel = $("metric");
    const keep = sel.value || state().metric;
    sel.replaceChildren();
    for (const n of names) sel.appendChild(el("option", { value: n }, n));
    const pick = [keep].concat(PREFERRED_METRICS).find((m) => m && names.includes(m)) || names[0];
    if (pick) sel.value = pick;
  }

  function escapeLabelValue(v) { return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n"); }

  function buildQuery(step) {
    const expr = $("expr").value.trim();
    if (expr) return expr;
    const metric = $("metric").value;
    if (!metric) return "";
    const svc = $("service").value;
    let q = metric + (svc ? '{aiven_service_name="' + escapeLabelValue(svc) + '"}' : "");
    if ($("rate").checked) q = "rate(" + q + "[" + Math.max(120, 4 * step) + "s])";
    return q;
  }

  const HIDDEN_LABELS = new Set(["__name__", "cf_organization_guid", "cf_space_guid", "cf_service_instance_guid",
    "cf_organization_name", "cf_space_name", "cf_service_instance_name", "aiven_plan", "aiven_cloud", "aiven_service_type", "aiven_service_name",
    "project", "cloud", "service", "service_type", "job", "instance", "cluster_name"]);
  function seriesLabel(metric) {
    const parts = [];
    if (metric.cf_service_instance_name) parts.push(metric.cf_service_instance_name);
    else if (metric.aiven_service_name) parts.push(metric.aiven_service_name);
    for (const k of Object.keys(metric).sort()) {
      // node_name repeats host on Aiven's JVM metrics: show each value once.
      if (HIDDEN_LABELS.has(k) || (k !== "host" && metric[k] === metric.host)) continue;
      parts.push(k + "=" + metric[k]);
    }
    return parts.join(" ") || metric.__name__ || "{}";
  }

  let drawSeq = 0;  // only the latest request draws: answers can arrive out of order
  async function drawChart() {
    const seq = ++drawSeq;
    const range = parseInt($("range").value, 10) || 3600;
    const end = Math.floor(Date.now() / 1000);
    const start = end - range;
    const step = Math.max(15, Math.ceil(range / MAX_POINTS));
    const query = buildQuery(step);
    saveState();
    if (!query) { $("chart-status").textContent = "Pick a metric to draw."; return; }
    $("chart-status").textContent = "Loading " + query + " …";
    let data;
    try {
      data = await api("query_range", [["query", query], ["start", String(start)], ["end", String(end)], ["step", String(step)]]);
    } catch (err) {
      if (seq !== drawSeq) return;
      $("chart-status").textContent = "Could not draw " + query + ".";
      window.TMChart.render($("chart"), [], { start: start, end: end, step: step,
        message: "Nothing drawn: see the message above" });
      $("chart").dataset.points = "0";
      $("legend").replaceChildren();
      showError(err, "chart");
      return;
    }
    if (seq !== drawSeq) return;
    clearError();
    const series = (data.result || []).map((r) => ({
      metric: r.metric || {},
      label: seriesLabel(r.metric || {}),
      points: (r.values || []).map((v) => [Number(v[0]), Number(v[1])]),
    }));
    // Labels that would read the same (the hidden ones differ) get the scrape address.
    const seen = new Map();
    for (const s of series) seen.set(s.label, (seen.get(s.label) || 0) + 1);
    for (const s of series) if (seen.get(s.label) > 1 && s.metric.instance) s.label += " " + s.metric.instance;
    const drawn = window.TMChart.render($("chart"), series, { start: start, end: end, step: step });
    $("chart").dataset.points = String(drawn);
    $("chart-title").textContent = query;
    const legend = $("legend");
    legend.replaceChildren();
    series.slice(0, window.TMChart.MAX_SERIES).forEach((s, i) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
      legend.appendChild(el("li", { class: "s" + i }, el("span", { class: "swatch" }), s.label,
        el("span", { class: "last" }, isFinite(last) ? " " + window.TMChart.formatValue(last) : "")));
    });
    const more = series.length > window.TMChart.MAX_SERIES ? " (showing the first " + window.TMChart.MAX_SERIES + ")" : "";
    $("chart-status").textContent = series.length + " series, " + drawn + " points, step " + step + " s" + more + ": " + query;
  }

  function state() {
    const p = new URLSearchParams(window.location.hash.slice(1));
    return { metric: p.get("metric") || "", service: p.get("service") || "", range: p.get("range") || "",
      rate: p.get("rate") === "1", expr: p.get("expr") || "" };
  }
  function saveState() {
    const p = new URLSearchParams();
    if ($("metric").value) p.set("metric", $("metric").value);
    if ($("service").value) p.set("service", $("service").value);
    p.set("range", $("range").value);
    if ($("rate").checked) p.set("rate", "1");
    if ($("expr").value.trim()) p.set("expr", $("expr").value.trim());
    history.replaceState(null, "", "#" + p.toString());
  }

  /** Alerts and capacity, alongside the services and the chart: one failing hides nothing else.
   * Resolves to the first failure ({err, where}) or null, shown after the chart (whose success
   * would otherwise clear the message). */
  async function loadOverview() {
    const [alerts, capacity] = await Promise.allSettled([loadAlerts(), loadCapacity()]);
    $("capacity").classList.toggle("stale", capacity.status === "rejected");
    if (alerts.status === "rejected") return { err: alerts.reason, where: "alerts" };
    if (capacity.status === "rejected") return { err: capacity.reason, where: "capacity" };
    return null;
  }
  async function showOverviewError(overview) {
    const failed = await overview;
    if (failed) showError(failed.err, failed.where);
  }

  async function refresh() {
    if (ssoEnded) return;
    if (sso) loadSession();
    try {
      await loadServices();
      $("services").classList.remove("stale");
      clearError();
    } catch (err) {
      // Keep the last lists on screen, greyed out, under the explanation.
      for (const id of ["services", "alerts", "capacity"]) $(id).classList.add("stale");
      showError(err, "services");
      if (err.status === 401 || ssoEnded) return;
    }
    const overview = loadOverview();
    await drawChart();
    await showOverviewError(overview);
  }

  async function start() {
    $("api-url").textContent = new URL("..", window.location.href).href.replace(/\/$/, "");
    loadSession();
    loadDashboards();
    const s = state();
    if (s.range) $("range").value = s.range;
    $("rate").checked = s.rate;
    $("expr").value = s.expr;
    const overview = loadOverview();
    try {
      await loadServices();
    } catch (err) {
      showError(err, "services");
      if (err.status === 401 || ssoEnded) return;
    }
    if (s.service) $("service").value = s.service;
    try {
      await loadMetricNames();
    } catch (err) {
      showError(err, "metric names");
    }
    await drawChart();
    await showOverviewError(overview);
    document.body.dataset.ready = "1";
    $("chart-form").addEventListener("submit", (ev) => { ev.preventDefault(); drawChart(); });
    for (const id of ["metric", "service", "range", "rate"]) $(id).addEventListener("change", () => drawChart());
    $("refresh").addEventListener("click", () => refresh());
    // Follow the scrapes (every minute on the platform) while the page is visible.
    window.setInterval(() => { if (!document.hidden) refresh(); }, 30000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((err) => showError(err, "page")).finally(() => { document.body.dataset.ready = "1"; });
  });
})();
