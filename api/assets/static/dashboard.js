// ocs-dash dashboard page. Plain ES module, no framework, no build step:
// Chart.js comes from /static/vendor/chart.umd.min.js (copied from npm by
// scripts/build-assets.sh) and nothing is fetched from another origin.
//
// Flow: filters (URL query string ⇄ controls ⇄ saved presets) → one GET per
// chart on /a/{team}/dashboard/api/{chart}/ → render cards, tables, charts.
// For tests: window.__charts (chart name → Chart.js instance),
// window.__lastData (chart name → last `data`), window.__lastFilters
// (chart name → resolved `filters`), window.__dashboard (load counters) and
// data-testid / data-value attributes on every number shown.

const CHARTS = [
  'overview', 'active-participants', 'session-analytics', 'message-volume',
  'bot-performance', 'user-engagement', 'channel-breakdown', 'tag-analytics',
];
const TITLES = {
  'overview': 'Overview', 'active-participants': 'Active participants', 'session-analytics': 'Sessions',
  'message-volume': 'Message volume', 'bot-performance': 'Chatbot performance',
  'user-engagement': 'Participant engagement', 'channel-breakdown': 'Channels', 'tag-analytics': 'Tags',
};
// metrics.md, "Platform values" and "Labels". `evaluations` is left out of
// the picker: evaluation sessions never count, so it would match nothing.
const PLATFORMS = [
  ['telegram', 'Telegram'], ['web', 'Web'], ['whatsapp', 'WhatsApp'], ['facebook', 'Facebook'],
  ['sureadhere', 'SureAdhere'], ['api', 'API'], ['slack', 'Slack'], ['commcare_connect', 'CommCare Connect'],
  ['embedded_widget', 'Chat Widget & API'], ['email', 'Email'],
];
const PLATFORM_LABEL = Object.fromEntries([...PLATFORMS, ['evaluations', 'Evaluations']]);
const COMMON_ZONES = [
  'UTC', 'Europe/London', 'Europe/Lisbon', 'Europe/Paris', 'Europe/Berlin', 'Europe/Amsterdam', 'Europe/Madrid',
  'Europe/Rome', 'Europe/Athens', 'Europe/Istanbul', 'Europe/Moscow', 'Africa/Casablanca', 'Africa/Lagos',
  'Africa/Cairo', 'Africa/Johannesburg', 'Africa/Nairobi', 'Asia/Dubai', 'Asia/Karachi', 'Asia/Kolkata',
  'Asia/Kathmandu', 'Asia/Dhaka', 'Asia/Bangkok', 'Asia/Jakarta', 'Asia/Manila', 'Asia/Singapore',
  'Asia/Shanghai', 'Asia/Tokyo', 'Australia/Perth', 'Australia/Sydney', 'Pacific/Auckland',
  'America/Sao_Paulo', 'America/Bogota', 'America/Mexico_City', 'America/New_York', 'America/Chicago',
  'America/Denver', 'America/Los_Angeles', 'America/Anchorage', 'Pacific/Honolulu',
];
const DATE_RANGES = ['7', '30', '90', '365', 'custom'];
const GRANULARITIES = ['hourly', 'daily', 'weekly', 'monthly'];
const FILTER_KEYS = ['date_range', 'start_date', 'end_date', 'granularity', 'timezone', 'experiments', 'channels'];
const DEBOUNCE_MS = 500;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const COLORS = {
  blue: '#2563eb', green: '#059669', violet: '#7c3aed', amber: '#d97706', slate: '#64748b',
};
const PALETTE = ['#2563eb', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626', '#4f46e5', '#0d9488', '#a16207', '#64748b'];

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';

const TEAM = meta('team-slug');
const CSRF = meta('csrf-token');
const BASE = `/a/${encodeURIComponent(TEAM)}/dashboard/`;
const BROWSER_ZONE = (() => {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch { return 'UTC'; }
})();

window.__charts = {};
window.__lastData = {};
window.__lastFilters = {};
window.__dashboard = { loads: 0, loading: false, errors: 0 };

// ---------------------------------------------------------------- state

const defaultFilters = () => ({
  date_range: '30', start_date: '', end_date: '', granularity: 'daily', timezone: BROWSER_ZONE,
  experiments: [], channels: [],
});
const defaultBotView = () => ({ order_by: 'messages', order_dir: 'desc', page: 1, page_size: 10 });

const state = {
  filters: defaultFilters(),
  bot: defaultBotView(),
  participantsKind: 'line',
  botOptions: [],          // [{id, name}]
  presets: [],
  loadGen: 0,
  controller: null,
  botController: null,
  asOf: null,
  lastResolved: null,      // resolved filters of the last answer (dates of a preset range)
};

const splitList = (values) => values.flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
const uniqSorted = (xs, numeric) => [...new Set(xs)].sort(numeric ? (a, b) => a - b : undefined);

/** Filters from any key/value source (URL, preset): unknown keys ignored, lists normalised. */
function filtersFrom(get, getAll) {
  const f = defaultFilters();
  const range = get('date_range');
  const start = get('start_date');
  const end = get('end_date');
  if (range && DATE_RANGES.includes(String(range))) f.date_range = String(range);
  else if (start && end) f.date_range = 'custom';
  if (f.date_range === 'custom') {
    f.start_date = start || '';
    f.end_date = end || '';
  }
  const g = get('granularity');
  if (g && GRANULARITIES.includes(g)) f.granularity = g;
  const tz = get('timezone');
  if (tz) f.timezone = String(tz);
  f.experiments = uniqSorted(splitList(getAll('experiments')).map(Number).filter(Number.isInteger), true);
  f.channels = uniqSorted(splitList(getAll('channels')));
  return f;
}

function filtersFromUrl(search) {
  const p = new URLSearchParams(search);
  return filtersFrom((k) => p.get(k), (k) => p.getAll(k));
}

function filtersFromPreset(obj) {
  const o = obj && typeof obj === 'object' ? obj : {};
  const get = (k) => (o[k] === undefined || o[k] === null ? null : Array.isArray(o[k]) ? o[k].join(',') : String(o[k]));
  const getAll = (k) => (o[k] === undefined || o[k] === null ? [] : Array.isArray(o[k]) ? o[k].map(String) : [String(o[k])]);
  return filtersFrom(get, getAll);
}

const urlHasFilters = (search) => {
  const p = new URLSearchParams(search);
  return FILTER_KEYS.some((k) => p.has(k));
};

/** The filters as API query parameters (lists comma separated). */
function filterParams(f = state.filters) {
  const p = [['date_range', f.date_range]];
  if (f.date_range === 'custom') p.push(['start_date', f.start_date], ['end_date', f.end_date]);
  p.push(['granularity', f.granularity], ['timezone', f.timezone]);
  if (f.experiments.length) p.push(['experiments', f.experiments.join(',')]);
  if (f.channels.length) p.push(['channels', f.channels.join(',')]);
  return p;
}

/** The filters as a JSON object (presets, exports): the same keys as the query string. */
function filterObject(f = state.filters) {
  const o = { date_range: f.date_range };
  if (f.date_range === 'custom') { o.start_date = f.start_date; o.end_date = f.end_date; }
  o.granularity = f.granularity;
  o.timezone = f.timezone;
  o.experiments = [...f.experiments];
  o.channels = [...f.channels];
  return o;
}

// Readable query strings: keep `/` (zones) and `,` (lists) unescaped.
const enc = (v) => encodeURIComponent(v).replace(/%2F/gi, '/').replace(/%2C/gi, ',');
const toQuery = (pairs) => pairs.map(([k, v]) => `${k}=${enc(v)}`).join('&');

function writeUrl() {
  const q = toQuery(filterParams());
  const url = `${location.pathname}?${q}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, '', url);
}

function customRangeValid(f = state.filters) {
  if (f.date_range !== 'custom') return true;
  const re = /^\d{4}-\d{2}-\d{2}$/;
  return re.test(f.start_date) && re.test(f.end_date) && f.start_date <= f.end_date;
}

// ---------------------------------------------------------------- formatting

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fmtInt = (n) => (n === null || n === undefined ? '—' : nf0.format(n));
const fmtDec = (n) => (n === null || n === undefined ? '—' : nf1.format(n));
const fmtPct = (x) => (x === null || x === undefined ? '—' : `${nf1.format(x * 100)}%`);

/** Minutes as a short human duration. */
function fmtMinutes(m) {
  if (m === null || m === undefined || Number.isNaN(m)) return '—';
  if (m < 1) return `${nf0.format(m * 60)} s`;
  if (m < 60) return `${nf1.format(m)} min`;
  if (m < 60 * 24) { const h = Math.floor(m / 60); return `${h} h ${Math.round(m - h * 60)} min`; }
  return `${nf1.format(m / 60 / 24)} d`;
}
const nfShort = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nfTiny = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 2 });
const shortNum = (x) => (Math.abs(x) < 1 && x !== 0 ? nfTiny.format(x) : nfShort.format(x));
/** Compact minutes for axis labels: 45 min, 2.5 h, 3 d. */
const minuteUnit = (m) => (m < 60 ? [1, 'min'] : m < 1440 ? [60, 'h'] : [1440, 'd']);
const fmtMinutesShort = (m) => { const [div, unit] = minuteUnit(m); return `${shortNum(m / div)} ${unit}`; };
/** A histogram bin as `6.5–12 min`, in the unit of its end. */
function binLabel(b) {
  if (b.bin_start === b.bin_end) return fmtMinutesShort(b.bin_start);
  const [div, unit] = minuteUnit(b.bin_end);
  if (minuteUnit(b.bin_start)[1] !== unit) return `${fmtMinutesShort(b.bin_start)}–${fmtMinutesShort(b.bin_end)}`;
  return `${shortNum(b.bin_start / div)}–${shortNum(b.bin_end / div)} ${unit}`;
}

/** A bucket name (RFC 3339 with the zone's offset) read as the local wall time it names. */
function bucketParts(bucket) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(bucket || '');
  if (!m) return null;
  return { y: +m[1], mo: +m[2], d: +m[3], h: m[4], mi: m[5] };
}
function bucketLabels(rows, granularity) {
  const parts = rows.map((r) => bucketParts(r.bucket));
  const years = new Set(parts.filter(Boolean).map((p) => p.y));
  const manyYears = years.size > 1;
  const short = parts.map((p, i) => {
    if (!p) return rows[i].bucket;
    const day = `${MONTHS[p.mo - 1]} ${p.d}`;
    switch (granularity) {
      case 'hourly': return `${day} ${p.h}:${p.mi}`;
      case 'monthly': return `${MONTHS[p.mo - 1]} ${p.y}`;
      default: return manyYears ? `${day}, ${p.y}` : day;
    }
  });
  const long = parts.map((p, i) => {
    if (!p) return rows[i].bucket;
    const day = `${MONTHS[p.mo - 1]} ${p.d}, ${p.y}`;
    switch (granularity) {
      case 'hourly': return `${day}, ${p.h}:${p.mi}`;
      case 'weekly': return `Week of ${day}`;
      case 'monthly': return `${MONTHS[p.mo - 1]} ${p.y}`;
      default: return day;
    }
  });
  return { short, long };
}

function fmtInstant(iso, zone, withYear = true) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  try {
    return new Intl.DateTimeFormat(undefined, {
      year: withYear ? 'numeric' : undefined, month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: zone,
    }).format(d);
  } catch {
    return d.toISOString().replace('T', ' ').slice(0, 16);
  }
}

function fmtAgo(iso) {
  const ms = Date.now() - new Date(iso).getTime();
  if (!Number.isFinite(ms)) return '';
  const min = Math.round(ms / 60000);
  if (min < 1) return 'just now';
  if (min < 60) return `${min} min ago`;
  const h = Math.round(min / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} days ago`;
}

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data') && k.length > 4 && k[4] !== '-') e.dataset[k.slice(4, 5).toLowerCase() + k.slice(5)] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const card = (chart) => document.querySelector(`[data-chart="${chart}"]`);

function setValue(node, value, text) {
  if (!node) return;
  node.dataset.value = value === null || value === undefined ? '' : String(value);
  node.textContent = text;
}

const ICON_ALERT = '<svg class="state-icon" viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="12" r="9"/><path d="M12 7v6M12 16.5v.5"/></svg>';
const ICON_EMPTY = '<svg class="state-icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M4 19h16M7 15V9M12 15V5M17 15v-3"/></svg>';

/** loading | ready | empty | error, with the skeleton or message overlay. */
function setCardState(chart, st, message) {
  const c = card(chart);
  if (!c) return;
  c.dataset.state = st;
  c.setAttribute('aria-busy', st === 'loading' ? 'true' : 'false');
  const body = $('.card-body', c);
  $('.state, .skeleton', body)?.remove();
  if (st === 'loading') {
    const sk = el('div', { class: chart === 'overview' ? 'skeleton skeleton-kpis' : 'skeleton', 'aria-hidden': 'true' });
    const n = chart === 'overview' ? 6 : 3;
    for (let i = 0; i < n; i++) sk.append(el('i'));
    body.append(sk);
  } else if (st === 'empty') {
    const s = el('div', { class: 'state state-empty', 'data-testid': `empty-${chart}` });
    s.innerHTML = ICON_EMPTY;
    s.append(el('strong', { text: message || 'No data for these filters' }),
      el('span', { class: 'small', text: 'Try a longer date range or fewer filters.' }));
    body.append(s);
  } else if (st === 'error') {
    const s = el('div', { class: 'state state-error', role: 'alert', 'data-testid': `error-${chart}` });
    s.innerHTML = ICON_ALERT;
    s.append(el('strong', { text: `Couldn't load ${TITLES[chart].toLowerCase()}` }),
      el('span', { class: 'small', 'data-testid': `error-message-${chart}`, text: message || 'Unknown error' }));
    if (message && /sign in/i.test(message)) s.append(el('a', { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}`, text: 'Sign in' }));
    body.append(s);
  }
  updateExportButtons(chart);
}

let toastTimer = null;
function toast(message, kind = 'info') {
  const t = $('#toast');
  t.textContent = message;
  t.classList.toggle('error', kind === 'error');
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, kind === 'error' ? 7000 : 3500);
}

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(message, status, parameter) { super(message); this.status = status; this.parameter = parameter; }
}

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText}`.trim();
  let parameter;
  try {
    const body = await res.json();
    if (body?.error?.message) message = body.error.message;
    else if (typeof body?.error === 'string') message = body.error;
    parameter = body?.error?.parameter;
  } catch { /* not JSON */ }
  if (res.status === 401) message = 'Your session has ended. Sign in again to see the dashboard.';
  if (res.status === 403 && !message) message = 'Not allowed.';
  return new ApiError(message, res.status, parameter);
}

async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = CSRF;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + path, {
    method, headers, signal, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await errorFrom(res);
  return res;
}

const apiJson = async (path, opts) => {
  const res = await api(path, opts);
  return res.status === 204 ? null : res.json();
};

function chartQuery(chart) {
  const p = filterParams();
  if (chart === 'bot-performance') {
    const b = state.bot;
    p.push(['order_by', b.order_by], ['order_dir', b.order_dir], ['page', String(b.page)], ['page_size', String(b.page_size)]);
  }
  return toQuery(p);
}

// ---------------------------------------------------------------- Chart.js

function chartDefaults() {
  const C = window.Chart;
  C.defaults.font.family = getComputedStyle(document.body).fontFamily;
  C.defaults.font.size = 12;
  C.defaults.color = '#5b6474';
  C.defaults.borderColor = '#eceef2';
  C.defaults.maintainAspectRatio = false;
  C.defaults.responsive = true;
  C.defaults.animation.duration = matchMedia('(prefers-reduced-motion: reduce)').matches ? 0 : 250;
  C.defaults.plugins.legend.labels.usePointStyle = true;
  C.defaults.plugins.legend.labels.boxHeight = 8;
  C.defaults.plugins.legend.labels.boxWidth = 8;
  C.defaults.plugins.tooltip.backgroundColor = '#0f172a';
  C.defaults.plugins.tooltip.padding = 10;
  C.defaults.plugins.tooltip.boxPadding = 4;
}

// PNG exports get a white background instead of a transparent one.
const whiteBackground = {
  id: 'whiteBackground',
  beforeDraw(chart) {
    const { ctx } = chart;
    ctx.save();
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, chart.width, chart.height);
    ctx.restore();
  },
};

function makeChart(name, canvas, config) {
  window.__charts[name]?.destroy();
  config.plugins = [...(config.plugins || []), whiteBackground];
  const chart = new window.Chart(canvas, config);
  window.__charts[name] = chart;
  return chart;
}

const timeAxes = (stacked = false) => ({
  x: { stacked, grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0, autoSkipPadding: 12 } },
  y: { stacked, beginAtZero: true, ticks: { precision: 0, callback: (v) => nf0.format(v) } },
});
const tooltipTitle = (long) => (items) => (items.length ? long[items[0].dataIndex] : '');

function lineDataset(label, data, color, extra = {}) {
  return {
    label, data, borderColor: color, backgroundColor: `${color}1f`, pointBackgroundColor: color,
    borderWidth: 2, pointRadius: data.length > 60 ? 0 : 2.5, pointHoverRadius: 4, cubicInterpolationMode: 'monotone', fill: false, ...extra,
  };
}

// ---------------------------------------------------------------- renderers

function renderOverview(d) {
  const c = card('overview');
  const set = (field, text) => setValue($(`[data-testid="overview-${field}"]`, c), d[field], text);
  for (const f of ['total_chatbots', 'active_chatbots', 'total_participants', 'active_participants', 'active_sessions',
    'sessions_started', 'completed_sessions', 'human_messages', 'ai_messages', 'total_messages']) set(f, fmtInt(d[f]));
  set('completion_rate', fmtPct(d.completion_rate));
  set('avg_messages_per_session', fmtDec(d.avg_messages_per_session));
  set('avg_sessions_per_participant', fmtDec(d.avg_sessions_per_participant));
  return 'ready';
}

function renderActiveParticipants(rows) {
  const { short, long } = bucketLabels(rows, state.filters.granularity);
  const values = rows.map((r) => r.active_participants);
  const kind = state.participantsKind;
  const canvas = $('[data-chart="active-participants"] canvas');
  const ds = kind === 'bar'
    ? { label: 'Active participants', data: values, backgroundColor: COLORS.violet, borderRadius: 3, maxBarThickness: 36 }
    : lineDataset('Active participants', values, COLORS.violet, { fill: true });
  const existing = window.__charts['active-participants'];
  if (existing && existing.config.type === kind) {
    existing.data.labels = short;
    existing.data.datasets = [ds];
    existing.options.plugins.tooltip.callbacks.title = tooltipTitle(long);
    existing.update();
  } else {
    makeChart('active-participants', canvas, {
      type: kind,
      data: { labels: short, datasets: [ds] },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: timeAxes(),
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: tooltipTitle(long) } } },
      },
    });
  }
  return values.every((v) => v === 0) ? 'empty' : 'ready';
}

function renderSessionAnalytics(rows) {
  const { short, long } = bucketLabels(rows, state.filters.granularity);
  const datasets = [
    { type: 'bar', label: 'Active sessions', data: rows.map((r) => r.active_sessions), backgroundColor: COLORS.blue, stack: 'sessions', borderRadius: 2, maxBarThickness: 40, order: 2 },
    { type: 'bar', label: 'Sessions started', data: rows.map((r) => r.sessions_started), backgroundColor: '#93c5fd', stack: 'sessions', borderRadius: 2, maxBarThickness: 40, order: 2 },
    { type: 'line', label: 'Active participants', data: rows.map((r) => r.active_participants), borderColor: COLORS.amber, backgroundColor: COLORS.amber, pointBackgroundColor: COLORS.amber, borderWidth: 2, pointRadius: rows.length > 60 ? 0 : 2.5, cubicInterpolationMode: 'monotone', stack: 'participants', order: 1 },
  ];
  const existing = window.__charts['session-analytics'];
  if (existing) {
    existing.data.labels = short;
    existing.data.datasets = datasets;
    existing.options.plugins.tooltip.callbacks.title = tooltipTitle(long);
    existing.update();
  } else {
    makeChart('session-analytics', $('[data-chart="session-analytics"] canvas'), {
      type: 'bar',
      data: { labels: short, datasets },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: timeAxes(true),
        plugins: {
          legend: { position: 'bottom', labels: { sort: (a, b) => a.datasetIndex - b.datasetIndex } },
          tooltip: { callbacks: { title: tooltipTitle(long) } },
        },
      },
    });
  }
  return rows.every((r) => !r.active_sessions && !r.sessions_started && !r.active_participants) ? 'empty' : 'ready';
}

function renderMessageVolume(rows) {
  const { short, long } = bucketLabels(rows, state.filters.granularity);
  const datasets = [
    lineDataset('Human messages', rows.map((r) => r.human_messages), COLORS.blue),
    lineDataset('Bot messages', rows.map((r) => r.ai_messages), COLORS.green),
  ];
  const existing = window.__charts['message-volume'];
  if (existing) {
    existing.data.labels = short;
    existing.data.datasets = datasets;
    existing.options.plugins.tooltip.callbacks.title = tooltipTitle(long);
    existing.update();
  } else {
    makeChart('message-volume', $('[data-chart="message-volume"] canvas'), {
      type: 'line',
      data: { labels: short, datasets },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: timeAxes(),
        plugins: {
          legend: { position: 'bottom' },
          tooltip: {
            callbacks: {
              title: tooltipTitle(long),
              footer: (items) => (items.length ? `Total: ${nf0.format(items.reduce((s, i) => s + i.parsed.y, 0))}` : ''),
            },
          },
        },
      },
    });
  }
  return rows.every((r) => !r.total_messages) ? 'empty' : 'ready';
}

function barCell(field, value, text, fraction, alt = false) {
  const bar = el('span', { class: alt ? 'bar alt' : 'bar', 'aria-hidden': 'true' }, el('i'));
  bar.firstChild.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  return el('td', { class: 'num', 'data-field': field, 'data-value': String(value ?? '') },
    el('div', { class: 'cell-bar' }, bar, el('span', { text })));
}
const numCell = (field, value, text) => el('td', { class: 'num', 'data-field': field, 'data-value': value === null || value === undefined ? '' : String(value), text });

function renderBotPerformance(d) {
  const c = card('bot-performance');
  const tbody = $('tbody', c);
  const maxMessages = Math.max(1, ...d.results.map((r) => r.messages));
  tbody.replaceChildren(...d.results.map((r) => el('tr', { 'data-testid': 'bot-row', 'data-chatbot-id': String(r.chatbot_id) },
    el('td', { class: 'col-name', 'data-field': 'chatbot_name', 'data-value': r.chatbot_name, title: r.chatbot_name, text: r.chatbot_name }),
    numCell('participants', r.participants, fmtInt(r.participants)),
    numCell('sessions', r.sessions, fmtInt(r.sessions)),
    barCell('messages', r.messages, fmtInt(r.messages), r.messages / maxMessages),
    numCell('avg_session_duration', r.avg_session_duration, fmtMinutes(r.avg_session_duration)),
    barCell('completion_rate', r.completion_rate, fmtPct(r.completion_rate), r.completion_rate, true),
    numCell('avg_messages_per_session', r.avg_messages_per_session, fmtDec(r.avg_messages_per_session)),
  )));
  for (const th of $$('th[data-sort]', c)) {
    const active = th.dataset.sort === state.bot.order_by;
    if (active) th.setAttribute('aria-sort', state.bot.order_dir === 'asc' ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
  const first = d.total_count === 0 ? 0 : (d.page - 1) * d.page_size + 1;
  const last = Math.min(d.total_count, d.page * d.page_size);
  const info = $('[data-testid="bot-pager-info"]', c);
  info.textContent = d.total_count === 0 ? 'No chatbots'
    : `${nf0.format(first)}–${nf0.format(last)} of ${nf0.format(d.total_count)} chatbot${d.total_count === 1 ? '' : 's'}`;
  info.dataset.totalCount = String(d.total_count);
  info.dataset.page = String(d.page);
  info.dataset.totalPages = String(d.total_pages);
  $('[data-page="prev"]', c).disabled = d.page <= 1;
  $('[data-page="next"]', c).disabled = d.page >= d.total_pages;
  $('[data-testid="bot-page-size"]', c).value = String(state.bot.page_size);
  return d.total_count === 0 ? 'empty' : 'ready';
}

function participantRows(rows, which) {
  if (!rows.length) return [el('tr', { class: 'empty-row' }, el('td', { colspan: '4', text: 'No participant sent a message in this period.' }))];
  return rows.map((r) => el('tr', { 'data-testid': `${which}-row`, 'data-participant-id': String(r.participant_id) },
    el('td', { 'data-field': 'participant_name', 'data-value': r.participant_name, title: r.participant_name, text: r.participant_name || `#${r.participant_id}` }),
    numCell('total_messages', r.total_messages, fmtInt(r.total_messages)),
    numCell('total_sessions', r.total_sessions, fmtInt(r.total_sessions)),
    el('td', { class: 'num', 'data-field': 'last_activity', 'data-value': r.last_activity, title: r.last_activity, text: fmtInstant(r.last_activity, state.filters.timezone, new Date(r.last_activity).getUTCFullYear() !== new Date().getUTCFullYear()) }),
  ));
}

function renderUserEngagement(d) {
  const c = card('user-engagement');
  $('[data-testid="most-active"] tbody', c).replaceChildren(...participantRows(d.most_active, 'most-active'));
  $('[data-testid="least-active"] tbody', c).replaceChildren(...participantRows(d.least_active, 'least-active'));
  const p = d.session_length_percentiles || {};
  for (const k of ['p50', 'p90', 'p99']) setValue($(`[data-testid="${k}"]`, c), p[k], fmtMinutes(p[k]));
  setValue($('[data-testid="engagement-total_participants"]', c), d.total_participants, fmtInt(d.total_participants));
  const bins = d.session_length_distribution;
  const labels = bins.map(binLabel);
  const data = bins.map((b) => b.count);
  const existing = window.__charts['user-engagement'];
  const ds = { label: 'Ended sessions', data, backgroundColor: COLORS.blue, borderRadius: 2, barPercentage: 0.95, categoryPercentage: 1 };
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets = [ds];
    existing.update();
  } else {
    makeChart('user-engagement', $('[data-chart="user-engagement"] canvas'), {
      type: 'bar',
      data: { labels, datasets: [ds] },
      options: {
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true }, title: { display: true, text: 'Session length' } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'Sessions' } },
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { title: (items) => (items.length ? `${labels[items[0].dataIndex]}` : '') } },
        },
      },
    });
    window.__charts['user-engagement'].options.plugins.tooltip.callbacks.title = (items) => (items.length ? window.__charts['user-engagement'].data.labels[items[0].dataIndex] : '');
  }
  return d.most_active.length === 0 && bins.length === 0 ? 'empty' : 'ready';
}

function renderChannelBreakdown(d) {
  const c = card('channel-breakdown');
  const rows = d.platforms;
  const labelOf = (r) => r.label || PLATFORM_LABEL[r.platform] || r.platform || 'Unknown';
  const colors = rows.map((_, i) => PALETTE[i % PALETTE.length]);
  $('tbody', c).replaceChildren(...rows.map((r, i) => {
    const sw = el('span', { class: 'swatch', 'aria-hidden': 'true' });
    sw.style.background = colors[i];
    return el('tr', { 'data-testid': 'channel-row', 'data-platform': r.platform ?? '' },
      el('td', { 'data-field': 'label', 'data-value': labelOf(r) }, sw, labelOf(r)),
      numCell('sessions', r.sessions, fmtInt(r.sessions)),
      numCell('session_share', r.session_share, fmtPct(r.session_share)),
      numCell('participants', r.participants, fmtInt(r.participants)),
      numCell('messages', r.human_messages + r.ai_messages, fmtInt(r.human_messages + r.ai_messages)),
    );
  }));
  const t = d.totals;
  $('tfoot', c).replaceChildren(el('tr', { 'data-testid': 'channel-totals' },
    el('td', { text: 'All channels' }),
    numCell('sessions', t.sessions, fmtInt(t.sessions)),
    numCell('session_share', rows.length ? 1 : 0, rows.length ? '100%' : '—'),
    numCell('participants', t.participants, fmtInt(t.participants)),
    numCell('messages', t.messages, fmtInt(t.messages)),
  ));
  const labels = rows.map(labelOf);
  const ds = { label: 'Sessions', data: rows.map((r) => r.sessions), backgroundColor: colors, borderColor: '#fff', borderWidth: 2, hoverOffset: 4 };
  const existing = window.__charts['channel-breakdown'];
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets = [ds];
    existing.update();
  } else {
    makeChart('channel-breakdown', $('[data-chart="channel-breakdown"] canvas'), {
      type: 'doughnut',
      data: { labels, datasets: [ds] },
      options: {
        cutout: '62%',
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => {
                const total = item.dataset.data.reduce((s, v) => s + v, 0) || 1;
                return ` ${item.label}: ${nf0.format(item.parsed)} sessions (${nf1.format((item.parsed / total) * 100)}%)`;
              },
            },
          },
        },
      },
    });
  }
  return rows.length === 0 ? 'empty' : 'ready';
}

function tagGroups(groups, which) {
  if (!groups.length) return [el('p', { class: 'none', text: 'No tags in this period.' })];
  const max = Math.max(1, ...groups.flatMap((g) => g.tags.map((t) => t.count)));
  return groups.map((g) => el('section', { class: 'tag-group', 'data-testid': `${which}-category`, 'data-category': g.category },
    el('h4', { text: g.label || g.category || 'User Defined' }),
    el('ul', {}, ...g.tags.map((t) => {
      const bar = el('span', { class: 'tag-bar', 'aria-hidden': 'true' }, el('i'));
      bar.firstChild.style.width = `${(t.count / max) * 100}%`;
      return el('li', { 'data-testid': `${which}-tag`, 'data-tag-id': String(t.tag_id), 'data-value': String(t.count) },
        el('span', { class: 'tag-name', title: t.name, text: t.name }), bar,
        el('span', { class: 'tag-count', text: fmtInt(t.count) }));
    }))));
}

function renderTagAnalytics(d) {
  const c = card('tag-analytics');
  setValue($('[data-testid="total-tagged-messages"]', c), d.total_tagged_messages, fmtInt(d.total_tagged_messages));
  $('[data-testid="message-tags"]', c).replaceChildren(...tagGroups(d.message_tags, 'message'));
  $('[data-testid="session-tags"]', c).replaceChildren(...tagGroups(d.session_tags, 'session'));
  return d.message_tags.length === 0 && d.session_tags.length === 0 ? 'empty' : 'ready';
}

const RENDER = {
  'overview': renderOverview,
  'active-participants': renderActiveParticipants,
  'session-analytics': renderSessionAnalytics,
  'message-volume': renderMessageVolume,
  'bot-performance': renderBotPerformance,
  'user-engagement': renderUserEngagement,
  'channel-breakdown': renderChannelBreakdown,
  'tag-analytics': renderTagAnalytics,
};
const EMPTY_MESSAGES = {
  'active-participants': 'No participant sent a message in this period',
  'session-analytics': 'No session activity in this period',
  'message-volume': 'No messages in this period',
  'bot-performance': 'No chatbots match these filters',
  'user-engagement': 'No participant activity in this period',
  'channel-breakdown': 'No sessions in this period',
  'tag-analytics': 'No tagged messages or sessions in this period',
};

// ---------------------------------------------------------------- loading

function noteSnapshot(resp) {
  const asOf = resp?.snapshot?.as_of;
  if (!asOf) return;
  if (!state.asOf || asOf > state.asOf) state.asOf = asOf;
  const node = $('#as-of');
  node.dataset.asOf = state.asOf;
  node.textContent = `Data as of ${fmtInstant(state.asOf, state.filters.timezone)} (${fmtAgo(state.asOf)})`;
  node.title = `Snapshot ${resp.snapshot.version || ''} exported ${state.asOf}`;
  node.classList.toggle('stale', Date.now() - new Date(state.asOf).getTime() > 36 * 3600 * 1000);
}

function noteResolved(resp) {
  const f = resp?.filters;
  if (!f?.start_date) return;
  state.lastResolved = f;
  if (state.filters.date_range !== 'custom') {
    $('#start_date').value = f.start_date;
    $('#end_date').value = f.end_date;
  }
}

async function loadChart(chart, gen, signal) {
  setCardState(chart, 'loading');
  try {
    const res = await api(`api/${chart}/?${chartQuery(chart)}`, { signal });
    const resp = await res.json();
    if (gen !== state.loadGen && chart !== 'bot-performance') return;
    window.__lastData[chart] = resp.data;
    window.__lastFilters[chart] = resp.filters;
    noteSnapshot(resp);
    noteResolved(resp);
    const st = RENDER[chart](resp.data);
    setCardState(chart, st, EMPTY_MESSAGES[chart]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    window.__dashboard.errors += 1;
    setCardState(chart, 'error', e.message);
    if (e.status !== 401) console.warn(`ocs-dash: ${chart}: ${e.message}`);
  }
}

async function loadAll() {
  if (!customRangeValid()) return;
  state.controller?.abort();
  state.botController?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const gen = ++state.loadGen;
  window.__dashboard.loading = true;
  document.body.dataset.loading = 'true';
  await Promise.all(CHARTS.map((c) => loadChart(c, gen, controller.signal)));
  if (gen !== state.loadGen) return;
  if (!state.asOf) $('#as-of').textContent = 'Data not available';
  window.__dashboard.loading = false;
  window.__dashboard.loads += 1;
  document.body.dataset.loading = 'false';
  document.body.dataset.loads = String(window.__dashboard.loads);
}

/** Only the chatbot table (sorting and paging). */
async function loadBotTable() {
  state.botController?.abort();
  const controller = new AbortController();
  state.botController = controller;
  window.__dashboard.loading = true;
  document.body.dataset.loading = 'true';
  await loadChart('bot-performance', state.loadGen, controller.signal);
  if (controller.signal.aborted) return;
  window.__dashboard.loading = false;
  window.__dashboard.loads += 1;
  document.body.dataset.loading = 'false';
  document.body.dataset.loads = String(window.__dashboard.loads);
}

// ---------------------------------------------------------------- controls

let applyTimer = null;
/** A filter changed: URL now, data after the debounce. */
function scheduleApply(immediate = false) {
  clearTimeout(applyTimer);
  const dates = [$('#start_date'), $('#end_date')];
  const valid = customRangeValid();
  for (const d of dates) d.setCustomValidity(valid ? '' : 'Choose a start date on or before the end date');
  if (!valid) return;
  renderFilterSummary();
  const run = () => { state.bot.page = 1; writeUrl(); loadAll(); };
  if (immediate) run();
  else applyTimer = setTimeout(run, DEBOUNCE_MS);
}

function multiselectSummary(id, emptyText, names) {
  const box = $(`#${id}`);
  const span = $('summary span', box);
  span.textContent = names.length === 0 ? emptyText : names.length <= 2 ? names.join(', ') : `${names.length} selected`;
  box.classList.toggle('has-value', names.length > 0);
}

function renderBotOptions() {
  const box = $('#experiments .multiselect-options');
  const selected = new Set(state.filters.experiments);
  const known = new Set(state.botOptions.map((b) => b.id));
  const names = new Map();
  for (const b of state.botOptions) names.set(b.name, (names.get(b.name) || 0) + 1);
  const opts = [
    ...state.botOptions.map((b) => ({ id: b.id, label: names.get(b.name) > 1 ? `${b.name} (#${b.id})` : b.name })),
    ...state.filters.experiments.filter((id) => !known.has(id)).map((id) => ({ id, label: `Chatbot #${id}` })),
  ];
  if (!opts.length) {
    box.replaceChildren(el('p', { class: 'muted small', text: 'No chatbots yet.' }));
  } else {
    box.replaceChildren(...opts.map((o) => el('label', {},
      el('input', { type: 'checkbox', value: String(o.id), checked: selected.has(o.id) ? true : null, 'data-testid': `experiment-option-${o.id}` }),
      el('span', { text: o.label }))));
  }
  multiselectSummary('experiments', 'All chatbots', opts.filter((o) => selected.has(o.id)).map((o) => o.label));
}

function renderChannelOptions() {
  const box = $('#channels .multiselect-options');
  const selected = new Set(state.filters.channels);
  const known = new Set(PLATFORMS.map(([v]) => v));
  const opts = [...PLATFORMS, ...state.filters.channels.filter((c) => !known.has(c)).map((c) => [c, PLATFORM_LABEL[c] || c])];
  box.replaceChildren(...opts.map(([value, label]) => el('label', {},
    el('input', { type: 'checkbox', value, checked: selected.has(value) ? true : null, 'data-testid': `channel-option-${value}` }),
    el('span', { text: label }))));
  multiselectSummary('channels', 'All channels', opts.filter(([v]) => selected.has(v)).map(([, l]) => l));
}

function renderZoneOptions() {
  const sel = $('#timezone');
  const zones = [...new Set([state.filters.timezone, BROWSER_ZONE, ...COMMON_ZONES])];
  const rest = zones.filter((z) => z !== 'UTC' && z !== BROWSER_ZONE).sort();
  const ordered = [...new Set(['UTC', BROWSER_ZONE, ...rest])];
  sel.replaceChildren(...ordered.map((z) => el('option', { value: z, text: z === BROWSER_ZONE && z !== 'UTC' ? `${z.replaceAll('_', ' ')} (this device)` : z.replaceAll('_', ' ') })));
  sel.value = state.filters.timezone;
}

/** One line saying what is applied (shown beside the phone's Filters button). */
function renderFilterSummary() {
  const f = state.filters;
  const range = f.date_range === 'custom' ? `${f.start_date} – ${f.end_date}` : f.date_range === '365' ? 'Last year' : `Last ${f.date_range} days`;
  const parts = [range, f.granularity[0].toUpperCase() + f.granularity.slice(1), f.timezone.replaceAll('_', ' ')];
  if (f.experiments.length) parts.push(`${f.experiments.length} chatbot${f.experiments.length > 1 ? 's' : ''}`);
  if (f.channels.length) parts.push(f.channels.map((c) => PLATFORM_LABEL[c] || c).join(', '));
  $('#filters-summary').textContent = parts.join(' · ');
}

/** Controls ← state.filters */
function syncControls() {
  const f = state.filters;
  for (const r of $$('input[name="date_range"]')) r.checked = r.value === f.date_range;
  if (f.date_range === 'custom') {
    $('#start_date').value = f.start_date;
    $('#end_date').value = f.end_date;
  }
  $('#granularity').value = f.granularity;
  renderZoneOptions();
  renderBotOptions();
  renderChannelOptions();
  renderFilterSummary();
}

function checkedValues(id) {
  return $$(`#${id} .multiselect-options input:checked`).map((i) => i.value);
}

function bindControls() {
  for (const r of $$('input[name="date_range"]')) {
    r.addEventListener('change', () => {
      state.filters.date_range = r.value;
      if (r.value === 'custom') {
        const lr = state.lastResolved;
        state.filters.start_date = $('#start_date').value || lr?.start_date || '';
        state.filters.end_date = $('#end_date').value || lr?.end_date || '';
        $('#start_date').value = state.filters.start_date;
        $('#end_date').value = state.filters.end_date;
      } else {
        state.filters.start_date = '';
        state.filters.end_date = '';
      }
      scheduleApply();
    });
  }
  for (const id of ['start_date', 'end_date']) {
    $(`#${id}`).addEventListener('change', () => {
      state.filters.date_range = 'custom';
      for (const r of $$('input[name="date_range"]')) r.checked = r.value === 'custom';
      state.filters.start_date = $('#start_date').value;
      state.filters.end_date = $('#end_date').value;
      scheduleApply();
    });
  }
  $('#granularity').addEventListener('change', (e) => { state.filters.granularity = e.target.value; scheduleApply(); });
  $('#timezone').addEventListener('change', (e) => { state.filters.timezone = e.target.value; scheduleApply(); });
  $('#experiments').addEventListener('change', () => {
    state.filters.experiments = uniqSorted(checkedValues('experiments').map(Number), true);
    renderBotOptionsSummaryOnly();
    scheduleApply();
  });
  $('#channels').addEventListener('change', () => {
    state.filters.channels = uniqSorted(checkedValues('channels'));
    const labels = PLATFORMS.filter(([v]) => state.filters.channels.includes(v)).map(([, l]) => l);
    multiselectSummary('channels', 'All channels', labels);
    scheduleApply();
  });
  for (const id of ['experiments', 'channels']) {
    $(`#${id} [data-clear]`).addEventListener('click', () => {
      for (const i of $$(`#${id} .multiselect-options input`)) i.checked = false;
      $(`#${id}`).dispatchEvent(new Event('change', { bubbles: true }));
    });
  }
  // Close open multi-selects on outside click and Escape.
  document.addEventListener('click', (e) => {
    for (const d of $$('details.multiselect[open]')) if (!d.contains(e.target)) d.open = false;
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    for (const d of $$('details.multiselect[open]')) { d.open = false; $('summary', d).focus(); }
  });
  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  $('#filters-toggle').addEventListener('click', () => {
    const open = !$('.filters').classList.contains('open');
    $('.filters').classList.toggle('open', open);
    $('#filters-toggle').setAttribute('aria-expanded', String(open));
  });
  $('#reset').addEventListener('click', () => {
    state.filters = defaultFilters();
    state.bot = defaultBotView();
    $('#preset-select').value = '';
    syncControls();
    clearTimeout(applyTimer);
    history.replaceState(null, '', location.pathname + location.hash);
    loadAll();
  });

  // Chatbot table: sorting and paging re-fetch only that chart.
  const bp = card('bot-performance');
  for (const th of $$('th[data-sort]', bp)) {
    $('button', th).addEventListener('click', () => {
      const key = th.dataset.sort;
      if (state.bot.order_by === key) state.bot.order_dir = state.bot.order_dir === 'asc' ? 'desc' : 'asc';
      else { state.bot.order_by = key; state.bot.order_dir = key === 'chatbot_name' ? 'asc' : 'desc'; }
      state.bot.page = 1;
      loadBotTable();
    });
  }
  $('[data-page="prev"]', bp).addEventListener('click', () => { state.bot.page = Math.max(1, state.bot.page - 1); loadBotTable(); });
  $('[data-page="next"]', bp).addEventListener('click', () => { state.bot.page += 1; loadBotTable(); });
  $('[data-testid="bot-page-size"]', bp).addEventListener('change', (e) => {
    state.bot.page_size = Number(e.target.value);
    state.bot.page = 1;
    loadBotTable();
  });

  // Line / bar toggle of active participants.
  const ap = card('active-participants');
  for (const b of $$('.toggle button', ap)) {
    b.addEventListener('click', () => {
      state.participantsKind = b.dataset.kind;
      for (const o of $$('.toggle button', ap)) o.setAttribute('aria-pressed', String(o === b));
      const data = window.__lastData['active-participants'];
      if (data) setCardState('active-participants', renderActiveParticipants(data), EMPTY_MESSAGES['active-participants']);
    });
  }
}

function renderBotOptionsSummaryOnly() {
  const selected = new Set(state.filters.experiments);
  const labels = $$('#experiments .multiselect-options label')
    .filter((l) => selected.has(Number($('input', l).value)))
    .map((l) => $('span', l).textContent);
  multiselectSummary('experiments', 'All chatbots', labels);
}

/** Chatbot choices: the bot-performance rows (every listed chatbot), 100 a page. */
async function loadBotOptions() {
  const bots = [];
  try {
    for (let page = 1; page <= 50; page++) {
      const q = toQuery([['date_range', '7'], ['timezone', 'UTC'], ['order_by', 'chatbot_name'], ['order_dir', 'asc'], ['page', String(page)], ['page_size', '100']]);
      const resp = await apiJson(`api/bot-performance/?${q}`);
      for (const r of resp.data.results) bots.push({ id: r.chatbot_id, name: r.chatbot_name });
      if (page >= resp.data.total_pages) break;
    }
  } catch (e) {
    $('#experiments .multiselect-options').replaceChildren(el('p', { class: 'muted small', text: `Couldn't load chatbots: ${e.message}` }));
    return;
  }
  state.botOptions = bots;
  renderBotOptions();
}

// ---------------------------------------------------------------- presets

async function loadPresets(selectId) {
  try {
    state.presets = await apiJson('filters/');
  } catch (e) {
    state.presets = [];
    if (e.status !== 401) toast(`Couldn't load saved views: ${e.message}`, 'error');
  }
  const sel = $('#preset-select');
  const opts = state.presets.map((p) => el('option', { value: String(p.id), text: p.is_default ? `${p.name} (default)` : p.name }));
  sel.replaceChildren(el('option', { value: '', text: state.presets.length ? 'Choose a saved view…' : 'No saved views' }), ...opts);
  if (selectId !== undefined) sel.value = String(selectId);
  updatePresetButtons();
  return state.presets;
}

function updatePresetButtons() {
  const has = $('#preset-select').value !== '';
  $('#preset-load').disabled = !has;
  $('#preset-delete').disabled = !has;
}

function applyPresetFilters(preset) {
  state.filters = filtersFromPreset(preset.filters);
  state.bot = defaultBotView();
  syncControls();
}

function bindPresets() {
  const sel = $('#preset-select');
  sel.addEventListener('change', () => { updatePresetButtons(); resetDeleteConfirm(); });
  $('#preset-load').addEventListener('click', async () => {
    if (!sel.value) return;
    try {
      const preset = await apiJson(`filters/load/${encodeURIComponent(sel.value)}/`);
      applyPresetFilters(preset);
      scheduleApply(true);
      toast(`Loaded “${preset.name}”`);
    } catch (e) {
      toast(`Couldn't load the view: ${e.message}`, 'error');
    }
  });

  const form = $('#preset-save-form');
  const open = $('#preset-save-open');
  const show = (on) => {
    form.hidden = !on;
    open.setAttribute('aria-expanded', String(on));
    if (on) {
      const current = state.presets.find((p) => String(p.id) === sel.value);
      $('#preset-name').value = current?.name || '';
      $('#preset-default').checked = Boolean(current?.is_default);
      $('#preset-name').focus();
    }
  };
  open.addEventListener('click', () => show(form.hidden));
  $('#preset-save-cancel').addEventListener('click', () => show(false));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('#preset-name').value.trim();
    if (!name) { $('#preset-name').focus(); return; }
    try {
      const res = await api('filters/save/', {
        method: 'POST',
        body: { name, filters: filterObject(), is_default: $('#preset-default').checked },
      });
      const preset = await res.json();
      await loadPresets(preset.id);
      show(false);
      toast(`Saved “${preset.name}”${preset.is_default ? ' as your default view' : ''}`);
    } catch (err) {
      toast(`Couldn't save the view: ${err.message}`, 'error');
    }
  });

  $('#preset-delete').addEventListener('click', async () => {
    const btn = $('#preset-delete');
    if (!sel.value) return;
    // Two clicks delete: no blocking confirm() dialog.
    if (btn.dataset.confirm !== 'yes') {
      btn.dataset.confirm = 'yes';
      btn.textContent = 'Confirm delete';
      btn.setAttribute('aria-label', 'Select again to delete this saved view');
      btn._timer = setTimeout(resetDeleteConfirm, 5000);
      return;
    }
    resetDeleteConfirm();
    const preset = state.presets.find((p) => String(p.id) === sel.value);
    try {
      await api(`filters/${encodeURIComponent(sel.value)}/`, { method: 'DELETE' });
      await loadPresets('');
      toast(`Deleted “${preset?.name ?? 'view'}”`);
    } catch (err) {
      toast(`Couldn't delete the view: ${err.message}`, 'error');
    }
  });
}

function resetDeleteConfirm() {
  const btn = $('#preset-delete');
  clearTimeout(btn._timer);
  btn.dataset.confirm = '';
  btn.textContent = 'Delete';
  btn.removeAttribute('aria-label');
}

// ---------------------------------------------------------------- exports

function filenameFrom(res, fallback) {
  const cd = res.headers.get('Content-Disposition') || '';
  const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
  if (star) { try { return decodeURIComponent(star[1]); } catch { /* fall through */ } }
  const plain = /filename="?([^";]+)"?/i.exec(cd);
  return plain ? plain[1] : fallback;
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function exportFilters(chart) {
  const o = filterObject();
  if (chart === 'bot-performance') { o.order_by = state.bot.order_by; o.order_dir = state.bot.order_dir; }
  return o;
}

const stamp = () => {
  const f = window.__lastFilters.overview || state.lastResolved;
  return f?.start_date ? `${f.start_date}_${f.end_date}` : new Date().toISOString().slice(0, 10);
};

async function exportChart(chart, format, button) {
  button.disabled = true;
  try {
    if (format === 'png') {
      const c = window.__charts[chart];
      if (!c) throw new Error('the chart is not drawn yet');
      const dataUrl = c.toBase64Image('image/png', 1);
      const bytes = Uint8Array.from(atob(dataUrl.split(',')[1]), (ch) => ch.charCodeAt(0));
      saveBlob(new Blob([bytes], { type: 'image/png' }), `${TEAM}_${chart}_${stamp()}.png`);
    } else {
      const res = await api('export/', {
        method: 'POST',
        body: { chart, format, include_filters: true, filters: exportFilters(chart) },
      });
      const blob = await res.blob();
      saveBlob(blob, filenameFrom(res, `${TEAM}_${chart}_${stamp()}.${format}`));
    }
  } catch (e) {
    toast(`Export failed: ${e.message}`, 'error');
  } finally {
    button.disabled = false;
    updateExportButtons(chart);
  }
}

function buildExportButtons() {
  for (const holder of $$('.card-actions[data-exports]')) {
    const chart = holder.closest('[data-chart]').dataset.chart;
    holder.setAttribute('role', 'group');
    holder.setAttribute('aria-label', `Export ${TITLES[chart]}`);
    for (const format of holder.dataset.exports.split(' ')) {
      const b = el('button', {
        type: 'button', 'data-format': format, 'data-testid': `export-${chart}-${format}`,
        'aria-label': `Download ${TITLES[chart]} as ${format.toUpperCase()}`, title: `Download as ${format.toUpperCase()}`,
        text: format.toUpperCase(),
      });
      b.addEventListener('click', () => exportChart(chart, format, b));
      holder.append(b);
    }
  }
}

function updateExportButtons(chart) {
  const c = card(chart);
  const st = c?.dataset.state;
  for (const b of $$('.card-actions button', c)) {
    b.disabled = st === 'loading' || st === 'error' || (b.dataset.format === 'png' && st !== 'ready');
  }
}

// ---------------------------------------------------------------- start

async function start() {
  buildExportButtons();
  for (const c of CHARTS) setCardState(c, 'loading');
  if (!window.Chart) {
    for (const c of CHARTS) setCardState(c, 'error', 'The chart library did not load. Reload the page.');
    return;
  }
  chartDefaults();
  bindControls();
  bindPresets();

  const fromUrl = urlHasFilters(location.search);
  state.filters = fromUrl ? filtersFromUrl(location.search) : defaultFilters();
  syncControls();
  loadBotOptions();
  const presets = await loadPresets();
  if (!fromUrl) {
    const def = presets.find((p) => p.is_default);
    if (def) {
      applyPresetFilters(def);
      $('#preset-select').value = String(def.id);
      updatePresetButtons();
      writeUrl();
    }
  }
  if (!customRangeValid()) {
    scheduleApply(true);
    for (const c of CHARTS) setCardState(c, 'error', 'Choose a start date on or before the end date.');
    return;
  }
  await loadAll();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
