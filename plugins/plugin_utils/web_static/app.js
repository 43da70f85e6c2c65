// v2kvm.migrate web dashboard. Every piece of text from the server goes through textContent (never
// innerHTML), so VM names and messages are shown, never interpreted. See docs/web-dashboard.md.
(function () {
  "use strict";

  var MAX_POINTS = 300;
  var MAX_ALERTS_SHOWN = 3;
  var token = "";
  (location.hash || "").replace(/^#/, "").split("&").forEach(function (part) {
    var kv = part.split("=");
    if (kv[0] === "token" && kv[1]) { token = decodeURIComponent(kv[1]); }
  });

  var state = {
    jobs: new Map(), rows: new Map(), seq: 0, series: [], alerts: [], metrics: {}, controller: {}, health: {},
    dismissed: new Set(JSON.parse(sessionStorage.getItem("v2kvm-dismissed") || "[]")),
    sortKey: "started", sortDir: -1, filter: "", status: "", order: [], selected: null,
    lastMessage: 0, interval: 1, tableDirty: true, chartsDirty: true, messages: 0,
  };
  var stats = { lastApplyMs: 0, lastRenderMs: 0, deltas: 0, snapshots: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function humanBytes(v) {
    if (v === null || v === undefined) { return "-"; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? Math.round(v) + " B" : v.toFixed(1) + " " + units[i];
  }
  function mbps(rate) { return rate ? (rate / 1e6).toFixed(1) : "-"; }
  function hms(sec) {
    if (sec === null || sec === undefined || isNaN(sec)) { return "-"; }
    sec = Math.max(0, Math.round(sec));
    var h = Math.floor(sec / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(s).padStart(2, "0");
  }
  function clock(ts) {
    if (!ts) { return "-"; }
    return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
  }
  function now() { return Date.now() / 1000; }
  function duration(job) {
    if (!job.started) { return null; }
    return (job.finished || now()) - job.started;
  }

  // -- connection ------------------------------------------------------------------------------

  var ws = null, backoff = 1, reconnectTimer = null, refused = false;

  function setConn(s, text) {
    var c = $("conn");
    c.dataset.state = s;
    $("conn-text").textContent = text;
  }

  function connect() {
    reconnectTimer = null;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" +
      (token ? "?token=" + encodeURIComponent(token) : "");
    setConn("connecting", "connecting…");
    try { ws = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
    ws.onopen = function () { backoff = 1; refused = false; setConn("live", "live"); };
    ws.onmessage = function (ev) { state.lastMessage = now(); onMessage(JSON.parse(ev.data)); };
    ws.onclose = function (ev) {
      ws = null;
      if (ev.code === 4429) { refused = true; }
      checkAuthThen(scheduleReconnect);
    };
    ws.onerror = function () { /* onclose follows */ };
  }

  function checkAuthThen(next) {
    fetch("/api/metrics", { headers: token ? { Authorization: "Bearer " + token } : {} }).then(function (r) {
      if (r.status === 401) {
        setConn("unauthorized", "unauthorized (401): open this page with #token=<token>");
        backoff = 30;
      }
      next();
    }, function () { next(); });
  }

  function scheduleReconnect() {
    if (reconnectTimer) { return; }
    var wait = Math.min(30, backoff) * (0.8 + Math.random() * 0.4);
    backoff = Math.min(30, backoff * 2);
    if (refused) { wait = Math.max(wait, 10); }
    var st = $("conn").dataset.state;
    if (st !== "unauthorized" && st !== "refused") { setConn("down", "disconnected — retry in " + Math.ceil(wait) + " s"); }
    reconnectTimer = setTimeout(connect, wait * 1000);
  }

  // A silent socket (proxy dropped it, server frozen) is closed and reopened.
  setInterval(function () {
    if (ws && ws.readyState === 1 && state.lastMessage && now() - state.lastMessage > 3 * state.interval + 10) {
      ws.close();
    }
    if (state.tableDirty === false) { updateDurations(); }
    renderHealth();
  }, 1000);

  // -- messages --------------------------------------------------------------------------------

  function onMessage(msg) {
    var t0 = performance.now();
    state.messages++;
    if (msg.type === "refused") {
      refused = true;
      setConn("refused", "refused: " + msg.reason);
      return;
    }
    if (msg.type === "snapshot") {
      stats.snapshots++;
      state.jobs = new Map();
      (msg.jobs || []).forEach(function (j) { state.jobs.set(j.id, j); });
      state.series = (msg.series || []).slice(-MAX_POINTS);
      state.alerts = msg.alerts || [];
      state.seq = msg.seq;
      state.tableDirty = true;
    } else if (msg.type === "delta") {
      if (state.seq && msg.seq !== state.seq + 1) {
        // Missed a push (slow tab, reconnect race): start again from the full state.
        if (ws && ws.readyState === 1) { ws.send(JSON.stringify({ type: "snapshot" })); }
      }
      stats.deltas++;
      state.seq = msg.seq;
      (msg.jobs || []).forEach(function (j) { state.jobs.set(j.id, j); });
      if (msg.jobs && msg.jobs.length) { state.tableDirty = true; }
      if (msg.point) { state.series.push(msg.point); if (state.series.length > MAX_POINTS) { state.series.shift(); } }
      (msg.alerts || []).forEach(function (a) { state.alerts.push(a); });
      if (state.alerts.length > 100) { state.alerts = state.alerts.slice(-100); }
      if (state.selected && (msg.jobs || []).some(function (j) { return j.id === state.selected; })) {
        loadDetail(state.selected, true);
      }
    } else {
      return;
    }
    state.metrics = msg.metrics || state.metrics;
    state.controller = msg.controller || state.controller;
    state.health = msg.health || state.health;
    if (state.health.interval) { state.interval = state.health.interval; }
    state.chartsDirty = true;
    stats.lastApplyMs = performance.now() - t0;
    scheduleRender();
  }

  var renderPending = false;
  function scheduleRender() {
    if (renderPending) { return; }
    renderPending = true;
    requestAnimationFrame(function () { renderPending = false; render(); });
  }

  function render() {
    var t0 = performance.now();
    renderCards();
    renderAlerts();
    if (state.tableDirty) { renderTable(); state.tableDirty = false; }
    if (state.chartsDirty) { renderCharts(); state.chartsDirty = false; }
    renderHealth();
    stats.lastRenderMs = performance.now() - t0;
  }

  // -- cards, alerts, health -------------------------------------------------------------------

  function setText(id, text) { var n = $(id); if (n.textContent !== text) { n.textContent = text; } }

  function renderCards() {
    var m = state.metrics, c = state.controller;
    setText("card-active", String(m.active ?? "-"));
    setText("card-completed", String(m.completed ?? "-"));
    setText("card-failed", String(m.failed ?? "-"));
    setText("card-queued", String(m.queued ?? "-"));
    setText("card-data", humanBytes(m.data_processed));
    setText("card-throughput", m.average_throughput ? (m.average_throughput / 1e6).toFixed(1) + " MB/s" : "-");
    setText("card-cpu", c.cpu_percent === null || c.cpu_percent === undefined ? "-" : c.cpu_percent.toFixed(1) + " %");
    setText("card-memory", c.rss ? humanBytes(c.rss) + (c.mem_percent !== null && c.mem_percent !== undefined
      ? " (" + c.mem_percent.toFixed(1) + " %)" : "") : "-");
  }

  function renderAlerts() {
    var box = $("alerts");
    var shown = state.alerts.filter(function (a) { return !state.dismissed.has(a.id); }).slice(-MAX_ALERTS_SHOWN).reverse();
    var key = shown.map(function (a) { return a.id; }).join(",");
    if (box.dataset.key === key) { return; }
    box.dataset.key = key;
    box.replaceChildren();
    shown.forEach(function (a) {
      var sev = ["critical", "warning", "info"].indexOf(a.severity) >= 0 ? a.severity : "info";
      var div = el("div", "alert " + sev);
      div.dataset.id = String(a.id);
      div.appendChild(el("span", "sev", sev));
      div.appendChild(el("span", "msg", a.message));
      div.appendChild(el("span", "t muted", clock(a.ts)));
      var b = el("button", "", "×");
      b.type = "button";
      b.setAttribute("aria-label", "dismiss");
      b.addEventListener("click", function () {
        state.dismissed.add(a.id);
        sessionStorage.setItem("v2kvm-dismissed", JSON.stringify(Array.from(state.dismissed).slice(-500)));
        renderAlerts();
      });
      div.appendChild(b);
      box.appendChild(div);
    });
  }

  function renderHealth() {
    var h = state.health;
    if (!h || !h.status) { return; }
    var age = state.lastMessage ? Math.round(now() - state.lastMessage) : null;
    var lastEvent = h.last_event ? hms(now() - h.last_event) + " ago" : "none";
    setText("health-text", "server " + h.status + " · up " + hms(h.uptime) + " · clients " + h.clients + "/" +
      h.max_clients + " · runs " + h.runs + " · last event " + lastEvent + " · history " + h.history +
      (age !== null && age > 3 * state.interval ? " · no push for " + age + " s" : ""));
  }

  // -- table -----------------------------------------------------------------------------------

  var SORTERS = {
    name: function (j) { return (j.name || j.host || "").toLowerCase(); },
    status: function (j) { return j.status || ""; },
    pct: function (j) { return j.status === "succeeded" ? 100 : (j.pct || 0); },
    stage: function (j) { return (j.stage || "").toLowerCase(); },
    rate: function (j) { return j.rate || 0; },
    source: function (j) { return j.source || ""; },
    target: function (j) { return j.target || ""; },
    duration: function (j) { return duration(j) || 0; },
    started: function (j) { return j.started || 0; },
  };

  function matches(j) {
    if (state.status && j.status !== state.status) { return false; }
    if (!state.filter) { return true; }
    var hay = ((j.name || "") + " " + (j.host || "") + " " + (j.stage || "") + " " + (j.target || "") + " " +
      (j.source || "")).toLowerCase();
    return hay.indexOf(state.filter) >= 0;
  }

  function makeRow(job) {
    var tr = el("tr");
    tr.dataset.id = job.id;
    var cells = {};
    ["vm", "status", "progress", "stage", "rate", "source", "target", "duration", "started"].forEach(function (k) {
      cells[k] = el("td", k);
      tr.appendChild(cells[k]);
    });
    cells.vmName = el("span", "name"); cells.vmHost = el("span", "host");
    cells.vm.append(cells.vmName, cells.vmHost);
    cells.badge = el("span", "badge"); cells.status.appendChild(cells.badge);
    cells.bar = el("div", "bar"); cells.fill = el("div", "fill"); cells.pct = el("span", "pct");
    cells.bar.append(cells.fill, cells.pct); cells.progress.appendChild(cells.bar);
    tr.addEventListener("click", function () { openDetail(job.id); });
    var row = { tr: tr, cells: cells, ver: null };
    state.rows.set(job.id, row);
    return row;
  }

  function fillRow(row, j) {
    var c = row.cells;
    var sig = [j.name, j.host, j.status, j.pct, j.stage, j.rate, j.source, j.target, j.started, j.finished].join("\u0001");
    if (row.ver === sig) { return; }
    row.ver = sig;
    c.vmName.textContent = j.name || j.host;
    c.vmHost.textContent = j.name && j.name !== j.host ? j.host : "";
    c.badge.textContent = j.status;
    c.badge.className = "badge " + (SORTERS.status(j).replace(/[^a-z]/g, ""));
    var pct = j.status === "succeeded" ? 100 : (j.pct === null || j.pct === undefined ? null : j.pct);
    c.bar.className = "bar " + (j.status || "").replace(/[^a-z]/g, "");
    c.fill.style.width = (pct || 0).toFixed(1) + "%";
    c.pct.textContent = pct === null ? "" : Math.round(pct) + "%";
    c.stage.textContent = j.stage || "-";
    c.stage.title = j.error || j.stage || "";
    c.rate.textContent = mbps(j.rate);
    c.source.textContent = j.source || "-";
    c.target.textContent = j.target || "-";
    c.duration.textContent = hms(duration(j));
    c.started.textContent = clock(j.started);
  }

  function renderTable() {
    var key = state.sortKey, dir = state.sortDir, get = SORTERS[key];
    var list = [];
    state.jobs.forEach(function (j) { if (!j.gone && matches(j)) { list.push(j); } });
    list.sort(function (a, b) {
      var x = get(a), y = get(b);
      if (x < y) { return -dir; } if (x > y) { return dir; }
      return a.id < b.id ? -1 : 1;
    });
    var body = $("jobs-body");
    var order = list.map(function (j) { return j.id; });
    list.forEach(function (j) { fillRow(state.rows.get(j.id) || makeRow(j), j); });
    if (order.join() !== state.order.join()) {
      var frag = document.createDocumentFragment();
      order.forEach(function (id) { frag.appendChild(state.rows.get(id).tr); });
      body.replaceChildren(frag);
      state.order = order;
    }
    setText("jobs-count", list.length === state.jobs.size ? "(" + list.length + ")" : "(" + list.length + " of " + state.jobs.size + ")");
    document.querySelectorAll("th[data-sort]").forEach(function (th) {
      if (th.dataset.sort === key) { th.dataset.dir = String(dir); } else { delete th.dataset.dir; }
    });
  }

  function updateDurations() {
    state.rows.forEach(function (row, id) {
      var j = state.jobs.get(id);
      if (j && j.status === "running") { row.cells.duration.textContent = hms(duration(j)); }
    });
  }

  document.querySelectorAll("th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var k = th.dataset.sort;
      state.sortDir = state.sortKey === k ? -state.sortDir : (k === "name" || k === "stage" ? 1 : -1);
      state.sortKey = k;
      renderTable();
    });
  });
  $("filter").addEventListener("input", function (e) { state.filter = e.target.value.trim().toLowerCase(); renderTable(); });
  $("status-filter").addEventListener("change", function (e) { state.status = e.target.value; renderTable(); });

  // -- detail ----------------------------------------------------------------------------------

  var detailTimer = null;
  function openDetail(id) {
    state.selected = id;
    state.rows.forEach(function (row, rid) { row.tr.classList.toggle("selected", rid === id); });
    $("detail").hidden = false;
    loadDetail(id, false);
  }
  $("detail-close").addEventListener("click", function () {
    state.selected = null;
    $("detail").hidden = true;
    state.rows.forEach(function (row) { row.tr.classList.remove("selected"); });
  });

  function loadDetail(id, soon) {
    if (soon) {
      if (detailTimer) { return; }
      detailTimer = setTimeout(function () { detailTimer = null; loadDetail(id, false); }, 1500);
      return;
    }
    fetch("/api/jobs/" + encodeURIComponent(id), { headers: token ? { Authorization: "Bearer " + token } : {} })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) { if (d && state.selected === id) { renderDetail(d); } });
  }

  function renderDetail(d) {
    var j = d.job;
    $("detail-title").textContent = (j.name || j.host) + " — " + j.status;
    var fields = $("detail-fields");
    fields.replaceChildren();
    [["VM", j.name], ["Inventory host", j.host], ["Run", (d.run.name || "") + " " + (d.run.label || "") + " (" + d.run.id + ")"],
     ["Status", j.status], ["Task", j.task], ["Stage", j.stage],
     ["Progress", j.total ? humanBytes(j.done) + " / " + humanBytes(j.total) : "-"], ["Rate", mbps(j.rate) + " MB/s"],
     ["Source", j.source || "-"], ["Target host", j.target || "-"], ["Started", clock(j.started)],
     ["Duration", hms(duration(j))], ["Error", j.error || "-"]].forEach(function (kv) {
      fields.append(el("dt", "", kv[0]), el("dd", "", kv[1] === undefined || kv[1] === null || kv[1] === "" ? "-" : kv[1]));
    });
    var errors = $("detail-errors");
    errors.replaceChildren();
    (d.errors.length ? d.errors : [null]).forEach(function (e) {
      var li = el("li", e ? "bad" : "muted");
      if (e) { li.append(el("span", "t", clock(e.ts)), document.createTextNode((e.task || "") + ": " + (e.msg || ""))); }
      else { li.textContent = "none"; }
      errors.appendChild(li);
    });
    var verdicts = $("detail-verdicts");
    verdicts.replaceChildren();
    (d.verdicts.length ? d.verdicts : [null]).forEach(function (v) {
      var li = el("li", v ? (v.verdict.ok ? "good" : "bad") : "muted");
      if (v) {
        li.append(el("span", "t", clock(v.ts)), document.createTextNode((v.verdict.ok ? "passed" : "failed") + " — " +
          (v.verdict.reason || "") + (v.verdict.line ? " [" + v.verdict.line + "]" : "")));
      } else { li.textContent = "none yet"; }
      verdicts.appendChild(li);
    });
    var events = $("detail-events");
    events.replaceChildren();
    d.events.slice(-200).forEach(function (e) {
      var text = e.type;
      if (e.task) { text += " · " + e.task; }
      if (e.status) { text += " · " + e.status; }
      if (e.type === "progress") { text += " · " + (e.stage || "") + " " + humanBytes(e.done) + "/" + humanBytes(e.total); }
      if (e.verdict && typeof e.verdict === "string") { text += " · " + e.verdict; }
      if (e.msg) { text += " · " + e.msg; }
      var li = el("li", e.status === "failed" || e.verdict === "failed" ? "bad" : "");
      li.append(el("span", "t", clock(e.ts)), document.createTextNode(text));
      events.appendChild(li);
    });
  }

  // -- charts ----------------------------------------------------------------------------------

  var charts = null;
  var COLORS = { running: "#58a6ff", succeeded: "#3fb950", failed: "#f85149", pending: "#a0a8b3" };

  function makeCharts() {
    if (!window.Chart) { return null; }
    Chart.defaults.color = "#8796a5";
    Chart.defaults.borderColor = "#2a3643";
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    var line = function (label, color, axis) {
      return { label: label, data: [], borderColor: color, backgroundColor: color, pointRadius: 0, borderWidth: 2,
        tension: 0.2, yAxisID: axis || "y" };
    };
    return {
      status: new Chart($("chart-status"), {
        type: "doughnut",
        data: { labels: ["running", "succeeded", "failed", "pending"],
          datasets: [{ data: [0, 0, 0, 0], borderWidth: 0,
            backgroundColor: [COLORS.running, COLORS.succeeded, COLORS.failed, COLORS.pending] }] },
        options: { plugins: { legend: { position: "right" } } },
      }),
      timeline: new Chart($("chart-timeline"), {
        type: "line",
        data: { labels: [], datasets: [line("active", COLORS.running), line("completed", COLORS.succeeded),
          line("failed", COLORS.failed), line("queued", COLORS.pending)] },
        options: { scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { beginAtZero: true, ticks: { precision: 0 } } } },
      }),
      hosts: new Chart($("chart-hosts"), {
        type: "bar",
        data: { labels: [], datasets: [{ label: "by source", data: [], backgroundColor: "#bc8cff" },
          { label: "by target host", data: [], backgroundColor: "#39c5cf" }] },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
      }),
      controller: new Chart($("chart-controller"), {
        type: "line",
        data: { labels: [], datasets: [line("CPU %", "#d29922", "y"), line("memory MiB", "#bc8cff", "y1")] },
        options: { scales: { x: { ticks: { maxTicksLimit: 6 } },
          y: { beginAtZero: true, position: "left", title: { display: true, text: "CPU %" } },
          y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
            title: { display: true, text: "MiB" } } } },
      }),
    };
  }

  function renderCharts() {
    if (!charts) { charts = makeCharts(); if (!charts) { return; } }
    var m = state.metrics;
    charts.status.data.datasets[0].data = [m.active || 0, m.completed || 0, m.failed || 0, m.queued || 0];
    charts.status.update("none");
    var labels = state.series.map(function (p) { return clock(p.ts); });
    var tl = charts.timeline.data;
    tl.labels = labels;
    ["active", "completed", "failed", "queued"].forEach(function (k, i) {
      tl.datasets[i].data = state.series.map(function (p) { return p[k]; });
    });
    charts.timeline.update("none");
    var bySource = {}, byTarget = {};
    state.jobs.forEach(function (j) {
      var s = "src: " + (j.source || "?"), t = "tgt: " + (j.target || "?");
      bySource[s] = (bySource[s] || 0) + 1;
      byTarget[t] = (byTarget[t] || 0) + 1;
    });
    var hostLabels = Object.keys(bySource).sort().concat(Object.keys(byTarget).sort());
    var hd = charts.hosts.data;
    hd.labels = hostLabels;
    hd.datasets[0].data = hostLabels.map(function (k) { return bySource[k] || 0; });
    hd.datasets[1].data = hostLabels.map(function (k) { return byTarget[k] || 0; });
    charts.hosts.update("none");
    var cd = charts.controller.data;
    cd.labels = labels;
    cd.datasets[0].data = state.series.map(function (p) { return p.cpu; });
    cd.datasets[1].data = state.series.map(function (p) { return p.rss ? p.rss / 1048576 : null; });
    charts.controller.update("none");
  }

  // Hooks for the browser tests and the benchmark (read-only views and the message entry point).
  window.v2kvmDashboard = {
    state: state, stats: stats, onMessage: onMessage, render: render,
    chartPoints: function () {
      if (!charts) { return null; }
      return { timeline: charts.timeline.data.labels.length, status: charts.status.data.datasets[0].data.slice(),
        hosts: charts.hosts.data.labels.slice(), controller: charts.controller.data.labels.length };
    },
  };

  connect();
})();
