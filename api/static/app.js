// The dashboard: plain DOM and SVG, no libraries, so it works with no network at all.
"use strict";

const W = 900, H = 320, PAD = { left: 56, right: 16, top: 12, bottom: 28 };
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_DAYS = 180;

async function getJSON(path) {
  const response = await fetch(path);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${path}: ${response.status} ${body.detail || ""}`);
  return body;
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const pct = (x, digits = 2) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)} %`);

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function showError(error) {
  const el = document.getElementById("error");
  el.hidden = false;
  el.textContent = String(error.message || error);
}

function renderHealth(health) {
  const el = document.getElementById("health");
  el.textContent = `data to ${health.newest_prediction_partition || "–"} · production v${health.production_version || "–"}`
    + (health.stale ? ` · stale (last session ${health.last_session})` : "")
    + (health.missing_tickers.length
      ? ` · missing ${health.missing_tickers.map((m) => m.ticker).join(", ")}`
      : "");
  el.title = health.missing_tickers.map((m) => `${m.ticker} ${m.trade_date}: ${m.reason}`).join("\n");
  el.className = health.stale || health.missing_tickers.length ? "badge stale" : "badge";
}

function renderTable(latest, selected) {
  const body = document.querySelector("#latest tbody");
  body.replaceChildren();
  for (const p of latest) {
    const row = document.createElement("tr");
    row.dataset.ticker = p.ticker;
    if (p.ticker === selected) row.className = "selected";
    cell(row, p.ticker);
    cell(row, p.as_of_date);
    cell(row, p.target_date);
    cell(row, fmt(p.last_close));
    cell(row, fmt(p.predicted_close));
    cell(row, `${fmt(p.lower)} – ${fmt(p.upper)}`);
    const r = p.predicted_return;
    cell(row, pct(r), r > 0 ? "up" : r < 0 ? "down" : "");
    cell(row, `v${p.model_version}`);
    cell(row, p.model_kind || "unknown", "kind");
    row.addEventListener("click", () => select(p.ticker));
    body.appendChild(row);
  }
}

function renderPromotions(promotions) {
  // newest first; a demotion (production back to naive) is marked like a loss
  const body = document.querySelector("#promotions tbody");
  body.replaceChildren();
  for (const m of promotions.slice().reverse().slice(0, 10)) {
    const row = document.createElement("tr");
    row.dataset.action = m.action;
    cell(row, m.promoted_at.slice(0, 16).replace("T", " "));
    cell(row, m.action, m.action === "demote" ? "down" : "");
    cell(row, m.previous_version ? `v${m.previous_version}` : "–");
    cell(row, `v${m.new_version}`);
    cell(row, m.actor);
    cell(row, m.reason);
    body.appendChild(row);
  }
}

function renderNext(p) {
  document.getElementById("next-close").textContent = fmt(p.predicted_close);
  document.getElementById("next-interval").textContent =
    `80 % interval ${fmt(p.lower)} – ${fmt(p.upper)} · ${pct(p.predicted_return)} vs last close ${fmt(p.last_close)}`;
  document.getElementById("next-meta").textContent =
    `${p.ticker} for ${p.target_date} (as of ${p.as_of_date}) · model v${p.model_version} (${p.model_kind || "unknown"})`;
}

function renderSkill(performance, mine, ticker) {
  const overall = performance.overall;
  const skill = overall.skill;
  // the big figure is every ticker's, whatever the selector says: say so, and give the
  // selected ticker's own line below
  document.getElementById("skill-scope").textContent =
    `skill of all ${performance.tickers.length} tickers over the newest ${performance.window_sessions} scored sessions`;
  const el = document.getElementById("skill-value");
  el.textContent = skill === null ? "–" : `${skill >= 0 ? "+" : ""}${(100 * skill).toFixed(2)} %`;
  el.className = `big ${skill > 0 ? "up" : skill < 0 ? "down" : ""}`;
  document.getElementById("skill-detail").textContent =
    `MAE ${fmt(overall.mae)} vs naive ${fmt(overall.naive_mae)} · 80 % coverage ${pct(overall.coverage_80, 0)}` +
    (overall.coverage_80_band ? ` (exact: ${pct(overall.coverage_80_band[0], 0)}–${pct(overall.coverage_80_band[1], 0)})` : "") +
    ` · interval score ${overall.interval_score_pct === null ? "–" : overall.interval_score_pct.toFixed(2) + " %"} · ${overall.predictions} predictions`;
  document.getElementById("skill-baselines").textContent =
    `naive's own interval: coverage ${pct(overall.naive_coverage_80, 0)} · score ${fmt(overall.naive_interval_score_pct)} %` +
    ` · direction: model ${pct(overall.direction_accuracy, 0)} vs always-up ${pct(overall.always_up_direction_accuracy, 0)}`;
  document.getElementById("skill-ticker").textContent = mine
    ? `${ticker}: skill ${pct(mine.skill)} · MAE ${fmt(mine.mae)} vs naive ${fmt(mine.naive_mae)}`
    : `${ticker}: not scored yet`;
}

function el(name, attrs) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function renderChart(ticker, prices, predictions, next) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  document.getElementById("chart-title").textContent = `${ticker}: recent closes and predictions`;
  const bars = prices.filter((b) => b.close !== null);
  const preds = predictions.filter((p) => p.lower !== null && p.upper !== null);
  const days = [...new Set([...bars.map((b) => b.trade_date), ...preds.map((p) => p.target_date)])].sort();
  if (!days.length) return;
  const index = new Map(days.map((d, i) => [d, i]));
  const values = [...bars.map((b) => b.close), ...preds.flatMap((p) => [p.lower, p.upper])];
  let lo = Math.min(...values), hi = Math.max(...values);
  const margin = (hi - lo) * 0.05 || 1;
  lo -= margin; hi += margin;
  const x = (d) => PAD.left + (index.get(d) / Math.max(days.length - 1, 1)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);

  svg.appendChild(el("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.appendChild(el("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    const label = el("text", { class: "tick", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = v.toFixed(0);
    svg.appendChild(label);
  }
  const anchors = ["start", "middle", "end"];
  [days[0], days[Math.floor(days.length / 2)], days[days.length - 1]].forEach((d, i) => {
    const label = el("text", { class: "tick", x: x(d), y: H - 8, "text-anchor": anchors[i] });
    label.textContent = d;
    svg.appendChild(label);
  });
  if (preds.length) {
    const upper = preds.map((p) => `${x(p.target_date)},${y(p.upper)}`);
    const lower = preds.map((p) => `${x(p.target_date)},${y(p.lower)}`).reverse();
    svg.appendChild(el("polygon", { class: "band", points: [...upper, ...lower].join(" ") }));
    svg.appendChild(el("polyline", {
      class: "predicted",
      points: preds.map((p) => `${x(p.target_date)},${y(p.predicted_close)}`).join(" "),
    }));
  }
  svg.appendChild(el("polyline", {
    class: "actual", points: bars.map((b) => `${x(b.trade_date)},${y(b.close)}`).join(" "),
  }));
  if (next && index.has(next.target_date)) {
    const nx = x(next.target_date);
    svg.appendChild(el("line", { class: "whisker", x1: nx, x2: nx, y1: y(next.lower), y2: y(next.upper) }));
    svg.appendChild(el("circle", { class: "next", cx: nx, cy: y(next.predicted_close), r: 4 }));
  }
}

// Out-of-sample coverage of the 80 % interval per target month, against the target line and
// the 95 % band an exact interval shows on that many predictions (normal approximation).
function renderCoverage(ticker, predictions) {
  const svg = document.getElementById("coverage");
  svg.replaceChildren();
  document.getElementById("coverage-title").textContent = `${ticker}: 80 % interval coverage per month`;
  const months = new Map();
  for (const p of predictions) {
    if (p.in_sample || p.actual_close === null || p.lower === null || p.upper === null) continue;
    const m = p.target_date.slice(0, 7);
    const agg = months.get(m) || { n: 0, hits: 0 };
    agg.n += 1;
    agg.hits += p.lower <= p.actual_close && p.actual_close <= p.upper ? 1 : 0;
    months.set(m, agg);
  }
  const keys = [...months.keys()].sort();
  const CW = 900, CH = 160, left = 56, bottom = 24, top = 8;
  const y = (v) => top + (1 - v) * (CH - top - bottom);
  for (const v of [0, 0.5, 0.8, 1]) {
    svg.appendChild(el("line", { class: v === 0.8 ? "target" : "axis", x1: left, x2: CW - 16, y1: y(v), y2: y(v) }));
    const label = el("text", { class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = `${Math.round(100 * v)} %`;
    svg.appendChild(label);
  }
  const step = (CW - left - 16) / Math.max(keys.length, 1);
  keys.forEach((m, i) => {
    const { n, hits } = months.get(m);
    const c = hits / n, sd = Math.sqrt(0.16 / n);
    const x0 = left + i * step + step * 0.2, w = step * 0.6;
    const ok = Math.abs(c - 0.8) <= 1.96 * sd;
    const bar = el("rect", { class: ok ? "month" : "month off", x: x0, y: y(c), width: w, height: y(0) - y(c) });
    const tip = el("title", {});
    tip.textContent = `${m}: ${hits}/${n} covered (${(100 * c).toFixed(0)} %)`;
    bar.appendChild(tip);
    svg.appendChild(bar);
    const label = el("text", { class: "tick", x: x0 + w / 2, y: CH - 6, "text-anchor": "middle" });
    label.textContent = m;
    svg.appendChild(label);
  });
}

function daysBefore(iso, days) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - days);
  return d.toISOString().slice(0, 10);
}

const state = { latest: [], performance: null };

async function select(ticker) {
  document.getElementById("ticker").value = ticker;
  document.body.dataset.ready = "";
  const next = state.latest.find((p) => p.ticker === ticker);
  renderTable(state.latest, ticker);
  if (next) renderNext(next);
  const mine = state.performance.tickers.find((t) => t.ticker === ticker);
  renderSkill(state.performance, mine, ticker);
  const end = next ? next.as_of_date : new Date().toISOString().slice(0, 10);
  const start = daysBefore(end, CHART_DAYS);
  const q = `start=${start}&end=${end}`;
  const [prices, history] = await Promise.all([
    getJSON(`/tickers/${encodeURIComponent(ticker)}/prices?${q}`),
    getJSON(`/tickers/${encodeURIComponent(ticker)}/predictions?${q}&page_size=1000`),
  ]);
  renderChart(ticker, prices.prices, history.predictions, next);
  renderCoverage(ticker, history.predictions);
  document.body.dataset.ready = "1";
}

async function main() {
  try {
    const health = await getJSON("/health");
    renderHealth(health);
  } catch (error) {
    document.getElementById("health").textContent = "database unavailable";
    document.getElementById("health").className = "badge down";
    showError(error);
    return;
  }
  try {
    const [latest, performance, promotions] = await Promise.all([
      getJSON("/predictions/latest"),
      getJSON("/performance"),
      getJSON("/model/promotions"),
    ]);
    renderPromotions(promotions.promotions);
    state.latest = latest.predictions;
    state.performance = performance;
    const picker = document.getElementById("ticker");
    for (const p of state.latest) picker.appendChild(new Option(p.ticker, p.ticker));
    picker.addEventListener("change", () => select(picker.value).catch(showError));
    if (state.latest.length) await select(state.latest[0].ticker);
    else document.body.dataset.ready = "1";
  } catch (error) {
    showError(error);
  }
}

main();
