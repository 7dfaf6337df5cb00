// The /ui page: polls the admin JSON endpoints and renders them. Every value
// is written with textContent (never innerHTML), and the admin endpoints
// redact credentials before they answer, so nothing here can show a secret.
"use strict";
const POLL_MS = 1000;
const TOKEN_KEY = "llmproxy.admin_token";

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function admin(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (resp.status === 401) { document.getElementById("token-form").hidden = false; }
  return resp;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

const ms = (v) => (v === null || v === undefined ? "–" : v.toFixed(v < 10 ? 1 : 0) + " ms");

function showError(text) {
  const e = document.getElementById("error");
  e.hidden = !text;
  e.textContent = text || "";
}

async function loadDeployments() {
  const [deps, models] = await Promise.all([admin("/admin/deployments"), admin("/admin/models")]);
  if (!deps.ok || !models.ok) throw new Error("/admin/deployments answered " + deps.status);
  const byDep = {};
  for (const m of (await models.json()).models)
    for (const d of m.deployments) (byDep[d.id] = byDep[d.id] || []).push(m.model);
  fill("deployments", (await deps.json()).deployments.map((d) => {
    const hc = d.health_check;
    const health = hc === null ? el("td", "off", "muted")
      : el("td", hc.ok === null ? "pending" : (hc.ok ? "ok " : "failed ") + ms(hc.latency_ms),
           hc.ok === null ? "muted" : (hc.ok ? "ok" : "failed"));
    if (hc && hc.error) health.title = hc.error;
    const breaker = el("td", d.breaker, d.breaker);
    breaker.dataset.deployment = d.id;
    const rate = d.requests ? (100 * d.failures / d.requests).toFixed(1) + "% of " + d.requests : "–";
    const room = [d.rpm && ("rpm " + d.rpm.headroom + "/" + d.rpm.limit),
                  d.tpm && ("tpm " + d.tpm.headroom + "/" + d.tpm.limit)].filter(Boolean).join(", ") || "–";
    const tr = row([el("td", d.id), (byDep[d.id] || []).join(", "), breaker, health,
                    d.in_flight + (d.max_concurrency ? "/" + d.max_concurrency : ""),
                    ms(d.ewma_latency_ms), rate, room]);
    tr.dataset.deployment = d.id;
    return tr;
  }));
}

async function loadRequests() {
  const resp = await admin("/admin/requests?limit=50");
  if (resp.status === 404) { fill("requests", [row([el("td", "request log off (admin.request_log: 0)", "muted")])]); return; }
  if (!resp.ok) return;
  fill("requests", (await resp.json()).requests.map((r) => row([
    new Date(r.time * 1000).toLocaleTimeString(), r.model || "–", r.deployment || "–", r.key || "–",
    el("td", r.status, r.status >= 400 ? "bad" : "ok"), ms(r.latency_ms), ms(r.ttft_ms),
    r.prompt_tokens === null ? "–" : r.prompt_tokens + " / " + (r.completion_tokens ?? "–"),
    r.cost_usd === null ? "–" : "$" + r.cost_usd.toFixed(6), r.retries, el("td", r.error || "", "error-text"),
  ])));
}

async function loadKeys() {
  const box = document.getElementById("keys");
  const resp = await admin("/admin/keys");
  if (resp.status === 404) { box.textContent = "no keys configured"; box.className = "muted"; return; }
  if (!resp.ok) return;
  const keys = (await resp.json()).keys || [];
  if (!keys.length) { box.textContent = "no keys configured"; return; }
  const table = el("table");
  table.appendChild(row(["key", "requests", "spend", "budget", "remaining"].map((h) => el("th", h))));
  for (const k of keys) {
    const spend = (k.budget && k.spend.period) ? k.spend.period : k.spend.lifetime;
    table.appendChild(row([k.name, String(k.requests), "$" + Number(spend.usd || 0).toFixed(4),
      k.budget ? "$" + Number(k.budget.usd).toFixed(2) + " / " + k.budget.period : "–",
      k.budget ? "$" + Number(k.budget.remaining_usd).toFixed(2) : "–"]));
  }
  box.className = "scroll";
  box.replaceChildren(table);
}

async function loadHistory() {
  const resp = await admin("/admin/config/history");
  if (!resp.ok) return;
  const doc = await resp.json();
  document.getElementById("sha").textContent = "config " + doc.current.slice(0, 12);
  fill("history", doc.history.map((h, i) => {
    const actions = el("td");
    const older = doc.history[i + 1];
    if (older) {
      const b = el("button", "diff");
      b.type = "button";
      b.onclick = () => showDiff(older.sha256, h.sha256);
      actions.appendChild(b);
    }
    return row([new Date(h.applied_at).toLocaleString(), h.sha256.slice(0, 12) + (h.current ? " (serving)" : ""),
                h.source, actions]);
  }));
}

async function showDiff(from, to) {
  const resp = await admin("/admin/config/diff?from=" + from + "&to=" + to);
  const pre = document.getElementById("diff");
  pre.hidden = false;
  if (!resp.ok) { pre.textContent = "diff failed: HTTP " + resp.status; return; }
  const text = (await resp.json()).diff || "(no difference in the secret-free view)";
  pre.replaceChildren(...text.split("\n").map((line) => {
    const span = el("span", line + "\n");
    if (line.startsWith("+") && !line.startsWith("+++")) span.className = "add";
    if (line.startsWith("-") && !line.startsWith("---")) span.className = "del";
    return span;
  }));
}

async function loadReady() {
  const resp = await fetch("/readyz", { cache: "no-store" });
  const doc = await resp.json();
  const pill = document.getElementById("ready");
  pill.textContent = doc.status;
  pill.className = "pill " + (resp.ok ? "ready" : "bad");
}

async function reload() {
  const out = document.getElementById("reload-result");
  out.textContent = "reloading…";
  const resp = await admin("/admin/reload", { method: "POST" });
  const doc = await resp.json().catch(() => ({}));
  out.textContent = resp.ok ? "reloaded " + doc.sha256.slice(0, 12)
    : "rejected: " + ((doc.error && doc.error.message) || "HTTP " + resp.status);
  out.className = resp.ok ? "ok" : "bad";
  out.dataset.status = resp.status;
  tick(true);
}

let busy = false;
let ticks = 0;
let wantAll = false;
async function tick(all) {
  if (busy) { wantAll = wantAll || all === true; return; }  // one poll at a time, never a pile
  busy = true;
  if (wantAll) { all = true; wantAll = false; }
  // Keys and the history change rarely: every fifth poll (and after a reload).
  const slow = all === true || ticks++ % 5 === 0;
  try {
    await Promise.all([loadDeployments(), loadRequests(), loadReady(),
                       slow ? loadKeys() : null, slow ? loadHistory() : null]);
    showError("");
    document.body.dataset.loaded = "1";
  } catch (e) {
    showError("cannot read the admin API: " + e.message);
  } finally {
    busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("reload").addEventListener("click", reload);
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    document.getElementById("token-form").hidden = true;
    tick(true);
  });
  tick(true);
  setInterval(tick, POLL_MS);
});
