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
    jobs: new Map(), seq: 0, series: [], alerts: [], metrics: {}, controller: {}, health: {},
    dismissed: new Set(JSON.parse(sessionStorage.getItem("v2kvm-dismissed") || "[]")),
    sortKey: "started", sortDir: -1, filter: "", status: "", order: [], selected: null,
    lastMessage: 0, interval: 1, tableDirty: true, windowDirty: true, seriesReset: true, newPoints: 0, hostsDirty: true,
    messages: 0,
  };
  var stats = { lastApplyMs: 0, lastRenderMs: 0, deltas: 0, snapshots: 0, rowsInDom: 0 };

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
  function pad2(n) { return n < 10 ? "0" + n : String(n); }
  // Formatted by hand: toLocaleTimeString builds a formatter per call, far too slow for 1000 rows a tick.
  function clock(ts) {
    if (!ts) { return "-"; }
    var d = new Date(ts * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }
  function now() { return Date.now() / 1000; }

  // -- untrusted values ------------------------------------------------------------------------
  // The server checks what runs send, but the page trusts nothing either (an older server, a bug):
  // a value of the wrong type is dropped and named in the #data-alert banner, and each job, message
  // and panel is drawn on its own, so one bad value costs that value, never the rest of the page.

  var badValues = 0;
  function reportBad(where, what) {
    badValues++;
    var box = $("data-alert");
    box.textContent = "Ignored " + badValues + " bad value" + (badValues > 1 ? "s" : "") + " from the server (last: " +
      String(where).slice(0, 120) + ": " + String(what).slice(0, 200) + "); the rest of the page stays live.";
    box.hidden = false;
  }
  function guard(where, fn) {
    try { fn(); } catch (e) { reportBad(where, e && e.message ? e.message : e); }
  }
  function finite(v) { return typeof v === "number" && isFinite(v); }

  var JOB_TEXT = ["run", "host", "name", "status", "stage", "task", "source", "target", "error"];
  var JOB_NUMBERS = ["pct", "done", "total", "rate", "eta", "started", "finished"];
  // A job with only fields of the types the table reads (texts, finite numbers or null).
  function cleanJob(j) {
    if (!j || typeof j !== "object" || typeof j.id !== "string" || !j.id) { throw new Error("a job without an id"); }
    var out = { id: j.id, gone: j.gone === true }, bad = [];
    JOB_TEXT.forEach(function (k) {
      var v = j[k];
      out[k] = typeof v === "string" ? v : "";
      if (v !== null && v !== undefined && typeof v !== "string") { bad.push(k); }
    });
    JOB_NUMBERS.forEach(function (k) {
      var v = j[k];
      out[k] = finite(v) ? v : null;
      if (v !== null && v !== undefined && !finite(v)) { bad.push(k); }
    });
    if (bad.length) { reportBad("job " + out.id, "field " + bad.join(", ") + " has the wrong type"); }
    return out;
  }
  // An object of numbers (metrics, controller, a chart point), but for the text keys named: a value of
  // another type becomes null.
  function cleanNumbers(obj, where, textKeys) {
    var out = {}, bad = [];
    if (!obj || typeof obj !== "object") { reportBad(where, "not an object"); return out; }
    Object.keys(obj).forEach(function (k) {
      var v = obj[k];
      if (textKeys && textKeys.indexOf(k) >= 0) { out[k] = typeof v === "string" ? v : ""; return; }
      out[k] = finite(v) ? v : null;
      if (v !== null && v !== undefined && !finite(v)) { bad.push(k); }
    });
    if (bad.length) { reportBad(where, "field " + bad.join(", ") + " is not a number"); }
    return out;
  }
  function eachJob(list, fn) {
    if (list === undefined || list === null) { return; }
    if (!Array.isArray(list)) { reportBad("message", "jobs is not a list"); return; }
    list.forEach(function (j) { guard("job", function () { var c = cleanJob(j); state.jobs.set(c.id, c); fn(c); }); });
  }
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
    ws.onmessage = function (ev) { onRaw(ev.data); };
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
    guard("table", updateDurations);
    guard("health", renderHealth);
  }, 1000);

  // -- messages --------------------------------------------------------------------------------

  function onRaw(text) {
    var t0 = performance.now(), msg;
    state.lastMessage = now();
    try { msg = JSON.parse(text); } catch (e) { reportBad("message", "not JSON (" + e.message + ")"); return; }
    guard("message", function () { onMessage(msg, t0); });
  }

  // t0: when the socket handed the message over (so the parse counts), else now.
  function onMessage(msg, t0) {
    if (t0 === undefined) { t0 = performance.now(); }
    if (!msg || typeof msg !== "object") { reportBad("message", "not an object"); return; }
    state.messages++;
    if (msg.type === "refused") {
      refused = true;
      setConn("refused", "refused: " + String(msg.reason));
      return;
    }
    if (msg.type === "snapshot") {
      stats.snapshots++;
      state.jobs = new Map();
      eachJob(msg.jobs, function () {});
      state.series = (Array.isArray(msg.series) ? msg.series : []).slice(-MAX_POINTS).map(function (p) {
        return cleanNumbers(p, "chart point");
      });
      state.seriesReset = true;
      state.hostsDirty = true;
      state.alerts = Array.isArray(msg.alerts) ? msg.alerts.filter(okAlert) : [];
      state.seq = finite(msg.seq) ? msg.seq : 0;
      state.tableDirty = true;
    } else if (msg.type === "delta") {
      if (state.seq && msg.seq !== state.seq + 1) {
        // Missed a push (slow tab, reconnect race): start again from the full state.
        if (ws && ws.readyState === 1) { ws.send(JSON.stringify({ type: "snapshot" })); }
      }
      stats.deltas++;
      state.seq = finite(msg.seq) ? msg.seq : 0;
      var changed = [];
      eachJob(msg.jobs, function (j) { changed.push(j.id); });
      if (changed.length) { state.tableDirty = true; state.hostsDirty = true; }
      if (msg.point) {
        state.series.push(cleanNumbers(msg.point, "chart point"));
        state.newPoints++;
        if (state.series.length > MAX_POINTS) { state.series.shift(); }
      }
      (Array.isArray(msg.alerts) ? msg.alerts : []).filter(okAlert).forEach(function (a) { state.alerts.push(a); });
      if (state.alerts.length > 100) { state.alerts = state.alerts.slice(-100); }
      if (state.selected && changed.indexOf(state.selected) >= 0) {
        loadDetail(state.selected, true);
      }
    } else {
      return;
    }
    if (msg.metrics) { state.metrics = cleanNumbers(msg.metrics, "metrics"); }
    if (msg.controller) { state.controller = cleanNumbers(msg.controller, "controller", ["run"]); }
    if (msg.health && typeof msg.health === "object") { state.health = msg.health; }
    if (finite(state.health.interval) && state.health.interval > 0) { state.interval = state.health.interval; }
    stats.lastApplyMs = performance.now() - t0;
    scheduleRender();
  }

  function okAlert(a) {
    if (a && typeof a === "object" && finite(a.id)) { return true; }
    reportBad("alert", "not an alert object");
    return false;
  }

  var renderPending = false;
  function scheduleRender() {
    if (renderPending) { return; }
    renderPending = true;
    requestAnimationFrame(function () { renderPending = false; render(); });
  }

  // One frame: DOM reads first (measureTable), then writes only where a value changed.
  function render() {
    var t0 = performance.now();
    guard("table", measureTable);
    guard("cards", renderCards);
    guard("alerts", renderAlerts);
    guard("table", renderTable);
    guard("charts", renderCharts);
    guard("health", renderHealth);
    stats.lastRenderMs = performance.now() - t0;
  }

  // -- cards, alerts, health -------------------------------------------------------------------

  var shownText = {};
  function setText(id, text) {
    if (shownText[id] !== text) { shownText[id] = text; $(id).textContent = text; }
  }

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
    name: function (j) { return (j.original_name || j.name || j.host || "").toLowerCase(); },
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
    var hay = ((j.name || "") + " " + (j.original_name || "") + " " + (j.host || "") + " " + (j.stage || "") + " " + (j.target || "") + " " +
      (j.source || "")).toLowerCase();
    return hay.indexOf(state.filter) >= 0;
  }

  // The table is virtual: only the rows in (or near) the visible part of the scroll box exist, in a
  // fixed pool of row "slots". A slot is refilled with whichever job sits at its position, and only
  // the cells whose text changed are written, so a tick that changes 1000 jobs touches a few dozen
  // cells and the layout of a few dozen rows. Spacer rows above and below keep the scroll height.
  var ROW_OVERSCAN = 10;
  var view = { rowHeight: 33, measured: false, scrollTop: 0, height: window.innerHeight, ids: [], slots: [],
    mounted: 0 };
  var wrap = document.querySelector(".table-wrap");
  wrap.addEventListener("scroll", function () {
    view.scrollTop = wrap.scrollTop;
    state.windowDirty = true;
    scheduleRender();
  }, { passive: true });
  window.addEventListener("resize", function () {
    view.height = window.innerHeight;
    state.windowDirty = true;
    scheduleRender();
  });

  function measureTable() {
    // Read once, at the start of a frame (before any write), so it never forces a layout mid-render.
    if (!view.measured && view.mounted) {
      var h = view.slots[0].tr.getBoundingClientRect().height;
      if (h > 0) { view.rowHeight = h; view.measured = true; }
    }
  }

  function makeSlot() {
    var tr = el("tr");
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
    var slot = { tr: tr, cells: cells, id: null, shown: {} };
    tr.addEventListener("click", function () { if (slot.id) { openDetail(slot.id); } });
    return slot;
  }

  // Writes a text (or class, style, attribute) only when it differs from what the slot shows.
  function put(slot, key, value, write) {
    if (slot.shown[key] !== value) { slot.shown[key] = value; write(value); }
  }

  function fillSlot(slot, j) {
    var c = slot.cells;
    slot.id = j.id;
    put(slot, "id", j.id, function (v) { slot.tr.dataset.id = v; });
    put(slot, "selected", j.id === state.selected, function (v) { slot.tr.classList.toggle("selected", v); });
    put(slot, "name", j.original_name || j.name || j.host || "", function (v) { c.vmName.textContent = v; });
    put(slot, "host", j.name && j.name !== j.host ? j.host : "", function (v) { c.vmHost.textContent = v; });
    var status = String(j.status || "");
    var statusClass = status.replace(/[^a-z]/g, "");
    put(slot, "status", status, function (v) { c.badge.textContent = v; });
    put(slot, "statusClass", statusClass, function (v) {
      c.badge.className = "badge " + v;
      c.bar.className = "bar " + v;
    });
    var pct = j.status === "succeeded" ? 100 : (j.pct === null || j.pct === undefined ? null : j.pct);
    put(slot, "width", (pct || 0).toFixed(1) + "%", function (v) { c.fill.style.width = v; });
    put(slot, "pct", pct === null ? "" : Math.round(pct) + "%", function (v) { c.pct.textContent = v; });
    put(slot, "stage", j.stage || "-", function (v) { c.stage.textContent = v; });
    put(slot, "title", j.error || j.stage || "", function (v) { c.stage.title = v; });
    put(slot, "rate", mbps(j.rate), function (v) { c.rate.textContent = v; });
    put(slot, "source", j.source || "-", function (v) { c.source.textContent = v; });
    put(slot, "target", j.target || "-", function (v) { c.target.textContent = v; });
    put(slot, "duration", hms(duration(j)), function (v) { c.duration.textContent = v; });
    put(slot, "started", clock(j.started), function (v) { c.started.textContent = v; });
  }

  function fillRow(slot, j) {
    try { fillSlot(slot, j); } catch (e) { reportBad("job " + (j && j.id), e && e.message ? e.message : e); }
  }

  function sortedIds() {
    var key = state.sortKey, dir = state.sortDir, get = SORTERS[key];
    var list = [];
    state.jobs.forEach(function (j) { if (!j.gone && matches(j)) { list.push({ k: get(j), id: j.id }); } });
    list.sort(function (a, b) {
      if (a.k < b.k) { return -dir; } if (a.k > b.k) { return dir; }
      return a.id < b.id ? -1 : 1;
    });
    return list.map(function (e) { return e.id; });
  }

  function renderTable() {
    if (state.tableDirty) {
      view.ids = sortedIds();
      var n = view.ids.length;
      setText("jobs-count", n === state.jobs.size ? "(" + n + ")" : "(" + n + " of " + state.jobs.size + ")");
    } else if (!state.windowDirty) {
      return;
    }
    var rowH = view.rowHeight, ids = view.ids;
    var perScreen = Math.ceil(view.height / rowH);
    // Clamped so a list that just shrank (filter) never leaves an empty window under a tall spacer.
    var first = Math.max(0, Math.min(Math.floor(view.scrollTop / rowH), ids.length - perScreen) - ROW_OVERSCAN);
    var count = Math.max(0, Math.min(ids.length - first, perScreen + 2 * ROW_OVERSCAN));
    while (view.slots.length < count) { view.slots.push(makeSlot()); }
    for (var i = 0; i < count; i++) { fillRow(view.slots[i], state.jobs.get(ids[first + i])); }
    var body = $("jobs-body");
    while (view.mounted < count) { body.appendChild(view.slots[view.mounted++].tr); }
    while (view.mounted > count) {
      var spare = view.slots[--view.mounted];
      spare.tr.remove();
      spare.id = null;
    }
    stats.rowsInDom = count;
    setHeight("jobs-pad-top", first * rowH);
    setHeight("jobs-pad-bottom", Math.max(0, ids.length - first - count) * rowH);
    state.tableDirty = false;
    state.windowDirty = false;
  }

  var shownHeight = {};
  function setHeight(id, px) {
    var v = Math.round(px) + "px";
    if (shownHeight[id] !== v) { shownHeight[id] = v; $(id).style.height = v; }
  }

  function updateDurations() {
    view.slots.slice(0, view.mounted).forEach(function (slot) {
      var j = slot.id && state.jobs.get(slot.id);
      if (j && j.status === "running") {
        put(slot, "duration", hms(duration(j)), function (v) { slot.cells.duration.textContent = v; });
      }
    });
  }

  function markSort() {
    document.querySelectorAll("th[data-sort]").forEach(function (th) {
      if (th.dataset.sort === state.sortKey) { th.dataset.dir = String(state.sortDir); } else { delete th.dataset.dir; }
    });
  }
  markSort();

  function refilter() { state.tableDirty = true; scheduleRender(); }

  document.querySelectorAll("th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var k = th.dataset.sort;
      state.sortDir = state.sortKey === k ? -state.sortDir : (k === "name" || k === "stage" ? 1 : -1);
      state.sortKey = k;
      markSort();
      refilter();
    });
  });
  $("filter").addEventListener("input", function (e) { state.filter = e.target.value.trim().toLowerCase(); refilter(); });
  $("status-filter").addEventListener("change", function (e) { state.status = e.target.value; refilter(); });

  // -- detail ----------------------------------------------------------------------------------

  var detailTimer = null;
  function openDetail(id) {
    state.selected = id;
    state.windowDirty = true;
    scheduleRender();
    $("detail").hidden = false;
    loadDetail(id, false);
  }
  $("detail-close").addEventListener("click", function () {
    state.selected = null;
    $("detail").hidden = true;
    state.windowDirty = true;
    scheduleRender();
  });

  function loadDetail(id, soon) {
    if (soon) {
      if (detailTimer) { return; }
      detailTimer = setTimeout(function () { detailTimer = null; loadDetail(id, false); }, 1500);
      return;
    }
    fetch("/api/jobs/" + encodeURIComponent(id), { headers: token ? { Authorization: "Bearer " + token } : {} })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (d && state.selected === id) { guard("job detail", function () { renderDetail(d); }); }
      }, function (e) { reportBad("job detail", e && e.message ? e.message : e); });
  }

  function renderDetail(d) {
    var j = d.job;
    $("detail-title").textContent = (j.original_name || j.name || j.host) + " — " + j.status;
    var fields = $("detail-fields");
    fields.replaceChildren();
    [["VM", j.name], ["Source name", j.original_name], ["Inventory host", j.host], ["Run", (d.run.name || "") + " " + (d.run.label || "") + " (" + d.run.id + ")"],
     ["Status", j.status], ["Task", j.task], ["Stage", j.stage],
     ["Progress", j.total ? humanBytes(j.done) + " / " + humanBytes(j.total) : "-"], ["Rate", j.rate ? mbps(j.rate) + " MB/s" : "-"],
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
        tension: 0, normalized: true, yAxisID: axis || "y" };
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

  // Charts change only when their data does: the time series gains one point per tick (pushed onto
  // the arrays Chart.js already holds, the oldest dropped), the doughnut and the host bars are
  // redrawn only when their counts differ. update("none"): no animation work.
  var SERIES_KEYS = ["active", "completed", "failed", "queued"];
  var shownCharts = { status: "", hosts: "" };

  function seriesValues(p) {
    return [p.active, p.completed, p.failed, p.queued, p.cpu, p.rss ? p.rss / 1048576 : null];
  }

  function renderCharts() {
    if (!charts) { charts = makeCharts(); if (!charts) { return; } state.seriesReset = true; }
    var m = state.metrics;
    var status = [m.active || 0, m.completed || 0, m.failed || 0, m.queued || 0];
    if (status.join() !== shownCharts.status) {
      shownCharts.status = status.join();
      charts.status.data.datasets[0].data = status;
      charts.status.update("none");
    }
    var tl = charts.timeline.data, cd = charts.controller.data;
    var sets = tl.datasets.concat(cd.datasets);
    if (state.seriesReset) {
      state.seriesReset = false;
      state.newPoints = 0;
      var labels = state.series.map(function (p) { return clock(p.ts); });
      tl.labels = labels;
      cd.labels = labels.slice();
      sets.forEach(function (ds) { ds.data = []; });
      state.series.forEach(function (p) {
        seriesValues(p).forEach(function (v, i) { sets[i].data.push(v); });
      });
      charts.timeline.update("none");
      charts.controller.update("none");
    } else if (state.newPoints) {
      state.series.slice(-Math.min(state.newPoints, MAX_POINTS)).forEach(function (p) {
        var label = clock(p.ts);
        tl.labels.push(label);
        cd.labels.push(label);
        seriesValues(p).forEach(function (v, i) { sets[i].data.push(v); });
      });
      state.newPoints = 0;
      while (tl.labels.length > MAX_POINTS) {
        tl.labels.shift();
        cd.labels.shift();
        sets.forEach(function (ds) { ds.data.shift(); });
      }
      charts.timeline.update("none");
      charts.controller.update("none");
    }
    if (state.hostsDirty) {
      state.hostsDirty = false;
      var bySource = {}, byTarget = {};
      state.jobs.forEach(function (j) {
        if (j.gone) { return; }
        var s = "src: " + (j.source || "?"), t = "tgt: " + (j.target || "?");
        bySource[s] = (bySource[s] || 0) + 1;
        byTarget[t] = (byTarget[t] || 0) + 1;
      });
      var hostLabels = Object.keys(bySource).sort().concat(Object.keys(byTarget).sort());
      var srcCounts = hostLabels.map(function (k) { return bySource[k] || 0; });
      var tgtCounts = hostLabels.map(function (k) { return byTarget[k] || 0; });
      var key = JSON.stringify([hostLabels, srcCounts, tgtCounts]);
      if (key !== shownCharts.hosts) {
        shownCharts.hosts = key;
        var hd = charts.hosts.data;
        hd.labels = hostLabels;
        hd.datasets[0].data = srcCounts;
        hd.datasets[1].data = tgtCounts;
        charts.hosts.update("none");
      }
    }
  }

  // Hooks for the browser tests and the benchmark (read-only views and the message entry point).
  window.v2kvmDashboard = {
    state: state, stats: stats, onMessage: onMessage, onRaw: onRaw, render: render,
    chartPoints: function () {
      if (!charts) { return null; }
      return { timeline: charts.timeline.data.labels.length, status: charts.status.data.datasets[0].data.slice(),
        hosts: charts.hosts.data.labels.slice(), controller: charts.controller.data.labels.length };
    },
  };

  connect();
})();
