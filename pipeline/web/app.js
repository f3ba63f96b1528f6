// Risk-map page: renders /api/snapshot and live updates from /api/stream (Server-Sent Events).
// Every value from the server goes in through textContent or a whitelisted class/number attribute:
// never an HTML-parsing sink, so names like "<img src=x onerror=...>" stay text.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["down", "fire", "crowding", "ok", "unknown"];
  const SEVERITY = ["info", "low", "medium", "high", "critical"];
  const MAX_CAMERA_ROWS = 200;
  let clockOffset = 0; // server time − local time, seconds
  let shownVersion = -1;

  const $ = (id) => document.getElementById(id);
  const state = (s) => (STATES.includes(s) ? s : "unknown");
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, cls) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (cls) node.setAttribute("class", cls);
    return node;
  }

  function fmtCount(v) {
    v = num(v);
    return v === null ? "–" : v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
  }

  // Fire levels are probabilities (0–1); crowding levels are people or people/m².
  function fmtLevel(ev) {
    return ev.kind === "fire" && ev.peak <= 1 ? ev.peak.toFixed(2) : fmtCount(ev.peak);
  }

  function place(ev) {
    return [ev.camera_name || ev.camera_id, ev.zone, ev.grid, ev.village, ev.town].filter(Boolean).join(" · ");
  }

  function fmtLeft(seconds) {
    const s = Math.abs(Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const body = (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
    return seconds < 0 ? "overdue " + body : body;
  }

  function tickDeadlines() {
    const now = Date.now() / 1000 + clockOffset;
    for (const cell of document.querySelectorAll("[data-deadline]")) {
      const left = Number(cell.dataset.deadline) - now;
      cell.textContent = fmtLeft(left);
      cell.classList.toggle("overdue", left < 0);
      cell.classList.toggle("soon", left >= 0 && left < 300);
    }
  }

  function renderTotals(t) {
    $("t-cameras").textContent = fmtCount(t.cameras);
    $("t-down").textContent = fmtCount(t.down);
    $("t-fire").textContent = fmtCount(t.fire);
    $("t-crowding").textContent = fmtCount(t.crowding);
    $("t-people").textContent = fmtCount(t.people);
    $("t-events").textContent = fmtCount(t.open_events);
    $("t-skipped").textContent = fmtCount(t.skipped_messages);
    $("skipped").hidden = !(num(t.skipped_messages) > 0);
  }

  function renderMap(snap) {
    const map = $("map");
    const layers = [svg("g", {}, "grids"), svg("g", {}, "events"), svg("g", {}, "cams")];
    for (const g of snap.grids || []) {
      if (num(g.x) === null) continue;
      const box = svg("g", {}, "grid state-" + state(g.state));
      box.appendChild(svg("rect", { x: g.x * 1000, y: g.y * 1000, width: g.w * 1000, height: g.h * 1000, rx: 8 }));
      const label = svg("text", { x: g.x * 1000 + 4, y: g.y * 1000 - 4 }, "grid-label");
      label.textContent = g.id;
      box.appendChild(label);
      layers[0].appendChild(box);
    }
    for (const ev of snap.events || []) {
      if (num(ev.x) === null || ev.camera_id) continue; // camera events colour the camera instead
      const x = ev.x * 1000, y = ev.y * 1000;
      const mark = svg("path", { d: `M${x} ${y - 14}L${x + 14} ${y}L${x} ${y + 14}L${x - 14} ${y}Z` },
        "event-mark sev-" + (SEVERITY[ev.severity_rank] || "medium"));
      const title = svg("title");
      title.textContent = (ev.title || ev.type || "event") + " · " + place(ev);
      mark.appendChild(title);
      layers[1].appendChild(mark);
    }
    let unplaced = 0;
    for (const cam of snap.cameras || []) {
      if (num(cam.x) === null) { unplaced += 1; continue; }
      const x = cam.x * 1000, y = cam.y * 1000, st = state(cam.state);
      const r = 15 + Math.min(18, Math.sqrt(num(cam.count) || 0) * 2);
      const group = svg("g", { "data-camera": cam.id }, "cam state-" + st);
      if (st === "down") group.appendChild(svg("circle", { cx: x, cy: y, r: r + 9 }, "halo"));
      group.appendChild(svg("circle", { cx: x, cy: y, r: r }, "dot"));
      const count = svg("text", { x: x, y: y + 8 }, "count");
      count.textContent = st === "down" ? "✕" : fmtCount(cam.count);
      group.appendChild(count);
      const name = svg("text", { x: x, y: y + r + 24 }, "name");
      name.textContent = cam.name || cam.id;
      group.appendChild(name);
      const title = svg("title");
      const zones = (cam.zones || []).map((z) => z.zone + " " + fmtCount(z.count)).join(", ");
      title.textContent = [cam.name || cam.id, cam.grid, st, cam.health, cam.reason, zones].filter(Boolean).join(" · ");
      group.appendChild(title);
      layers[2].appendChild(group);
    }
    map.replaceChildren(...layers);
    $("unplaced").textContent = unplaced ? unplaced + " camera(s) have no lat/lon and are listed below only." : "";
  }

  function renderEvents(events) {
    const body = document.querySelector("#events tbody");
    const rows = events.map((ev) => {
      const row = el("tr", "sev-" + (SEVERITY[ev.severity_rank] || "medium"));
      row.dataset.eventId = ev.event_id;
      row.appendChild(el("td", "severity", ev.severity || SEVERITY[ev.severity_rank]));
      const what = el("td", "what");
      what.appendChild(el("div", "title", ev.title || ev.type || "event"));
      what.appendChild(el("div", "muted", [ev.catalog_code, ev.title_en, ev.fused ? "fused 融合" : null,
        num(ev.peak) !== null ? "peak " + fmtLevel(ev) : null].filter(Boolean).join(" · ")));
      row.appendChild(what);
      row.appendChild(el("td", "place", place(ev)));
      const unit = el("td", "unit");
      unit.appendChild(el("div", null, ev.handling_unit || "–"));
      unit.appendChild(el("div", "muted", [ev.department, ev.level, ev.escalations ? "escalated ×" + ev.escalations : null,
        ev.acknowledged_by ? "ack " + ev.acknowledged_by : null].filter(Boolean).join(" · ")));
      row.appendChild(unit);
      const left = el("td", "left", "–");
      if (num(ev.deadline) !== null) left.dataset.deadline = String(ev.deadline);
      row.appendChild(left);
      return row;
    });
    body.replaceChildren(...rows);
    $("no-events").hidden = rows.length > 0;
    $("events-count").textContent = rows.length ? "(" + rows.length + ")" : "";
  }

  function renderCameras(cameras) {
    const down = cameras.filter((c) => state(c.state) === "down");
    $("down-list").replaceChildren(...(down.length ? down.map((c) => {
      const item = el("li", "down");
      item.appendChild(el("b", null, c.name || c.id));
      item.appendChild(el("span", "muted", " " + [c.grid, c.health, c.reason].filter(Boolean).join(" · ")));
      return item;
    }) : [el("li", "muted", "none")]));
    const order = (c) => STATES.indexOf(state(c.state));
    const sorted = cameras.slice().sort((a, b) => order(a) - order(b) || (num(b.count) || 0) - (num(a.count) || 0));
    const rows = sorted.slice(0, MAX_CAMERA_ROWS).map((c) => {
      const row = el("tr", "state-" + state(c.state));
      row.dataset.camera = c.id;
      row.appendChild(el("td", "cam-name", c.name || c.id));
      row.appendChild(el("td", null, c.grid || "–"));
      row.appendChild(el("td", "state", state(c.state)));
      row.appendChild(el("td", "count", fmtCount(c.count)));
      row.appendChild(el("td", "zones",
        (c.zones || []).filter((z) => z.zone !== "*").map((z) => z.zone + " " + fmtCount(z.count)).join(" · ") || "–"));
      row.appendChild(el("td", null, num(c.fire_score) === null ? "–" : c.fire_score.toFixed(2) + (c.fire_confirmed ? " ✔" : "")));
      return row;
    });
    document.querySelector("#cameras tbody").replaceChildren(...rows);
  }

  function render(snap) {
    if (!snap || typeof snap !== "object" || (num(snap.version) || 0) < shownVersion) return;
    shownVersion = num(snap.version) || 0;
    clockOffset = (num(snap.server_time) || Date.now() / 1000) - Date.now() / 1000;
    renderTotals(snap.totals || {});
    renderMap(snap);
    renderEvents(snap.events || []);
    renderCameras(snap.cameras || []);
    tickDeadlines();
    document.body.dataset.version = String(num(snap.version) || 0);
    $("updated").textContent = new Date().toLocaleTimeString();
  }

  function setConn(text, cls) {
    const node = $("conn");
    node.textContent = text;
    node.className = "conn " + cls;
  }

  function connect() {
    const source = new EventSource("/api/stream");
    source.addEventListener("snapshot", (e) => {
      try { render(JSON.parse(e.data)); } catch (err) { console.error("bad snapshot", err); }
    });
    source.onopen = () => setConn("live 实时", "live");
    source.onerror = () => setConn(source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…", "lost");
  }

  document.addEventListener("DOMContentLoaded", () => {
    fetch("/api/snapshot", { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then(render)
      .catch((err) => setConn("error: " + err.message, "lost"));
    connect();
    setInterval(tickDeadlines, 1000);
  });
})();
