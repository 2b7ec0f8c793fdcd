// A stand-in for `ocs-dash serve`, for working on the dashboard page and its
// browser test without the Rust server: serves api/assets the way the real
// server does (template placeholders, /static/), a /login form, the chart
// endpoints over a small synthetic data set computed per metrics.md (loosely:
// enough for consistent numbers, not a reference implementation), presets
// and exports.
//
//   node tests/browser/mock-server.mjs [--port 8089] [--expected out.json --query 'date_range=custom&...']
//
// With --expected it writes the EXPECTED_JSON file for dashboard.test.mjs
// (base, weekly and channel variants, like tests/browser.rs does with the
// engine) and keeps serving. The real contract is tested by tests/browser.rs.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ASSETS = path.join(ROOT, 'api/assets');
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const PORT = Number(args.port || process.env.PORT || 8089);
const TEAM = { slug: 'demo', name: 'Demo Team <QA & "Ops">' };
const KEY = 'mock-key';
const CSRF = crypto.randomBytes(16).toString('hex');
const SESSIONS = new Map(); // cookie → user
const AS_OF = '2026-11-20T02:00:03Z';
const NOW = new Date('2026-11-20T12:00:00Z');

// ------------------------------------------------------------------ data
let seed = 7;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const PLATFORMS = { telegram: 'Telegram', web: 'Web', whatsapp: 'WhatsApp', facebook: 'Facebook', sureadhere: 'SureAdhere', api: 'API', slack: 'Slack', commcare_connect: 'CommCare Connect', evaluations: 'Evaluations', embedded_widget: 'Chat Widget & API', email: 'Email' };
const BOTS = [[11, 'Maternal health helper'], [12, 'FAQ bot'], [14, 'Onboarding coach'], [15, 'Écoute — support'], [17, 'Survey bot'], [18, 'Zebra test bot']];
const PARTS = Array.from({ length: 150 }, (_, i) => ({ id: 1000 + i, name: i % 5 ? `Participant ${i + 1}` : `+2547000${String(i).padStart(4, '0')}` }));
const PLATS = ['whatsapp', 'whatsapp', 'web', 'telegram', 'embedded_widget', 'api'];
const TAGS = [[1, 'greeting', ''], [2, 'escalate', ''], [3, 'unsafe', 'safety_layer_response'], [4, 'thumbs_up', 'response_rating'], [5, 'thumbs_down', 'response_rating'], [6, 'image', 'media_type']];
const CAT_LABEL = { '': 'User Defined', bot_response: 'Bot Response', safety_layer_response: 'Safety Layer Response', experiment_version: 'Experiment Version', response_rating: 'Response Rating', error: 'Error', media_type: 'Media Type' };
const sessions = [];
const messages = [];
for (let i = 0; i < 2500; i++) {
  const created = NOW.getTime() - rnd() * 400 * 86400e3;
  const p = PARTS[Math.floor(rnd() ** 1.6 * PARTS.length)];
  const s = { id: i + 1, bot: BOTS[Math.floor(rnd() * BOTS.length)][0], participant: p.id, platform: PLATS[Math.floor(rnd() * PLATS.length)], created, ended: null, tags: [] };
  const n = 1 + Math.floor(rnd() * 12);
  let t = created;
  for (let k = 0; k < n; k++) {
    t += rnd() * 600e3;
    if (t > NOW.getTime()) break;
    const human = k % 2 === 0;
    messages.push({ session: s, human, at: t, tags: rnd() < 0.08 ? [TAGS[Math.floor(rnd() * TAGS.length)][0]] : [] });
  }
  if (rnd() < 0.6) s.ended = t + rnd() * 300e3;
  if (rnd() < 0.1) s.tags.push(TAGS[Math.floor(rnd() * 2)][0]);
  sessions.push(s);
}

// ------------------------------------------------------------------ time
const DAY = 86400e3;
function offsetMin(zone, ms) {
  const f = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' }).formatToParts(new Date(ms));
  const v = f.find((p) => p.type === 'timeZoneName').value; // GMT+05:30
  const m = /GMT([+-])(\d{2}):?(\d{2})?/.exec(v);
  return m ? (m[1] === '-' ? -1 : 1) * (+m[2] * 60 + +(m[3] || 0)) : 0;
}
const localMs = (zone, ms) => ms + offsetMin(zone, ms) * 60e3; // wall time as if UTC
const zonedToUtc = (zone, wall) => { let g = wall - offsetMin(zone, wall) * 60e3; g = wall - offsetMin(zone, g) * 60e3; return g; };
const ymd = (wall) => new Date(wall).toISOString().slice(0, 10);
function truncWall(wall, g) {
  const d = new Date(wall);
  if (g === 'hourly') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours());
  if (g === 'daily') return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (g === 'weekly') { const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()); return day - ((d.getUTCDay() + 6) % 7) * DAY; }
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}
function nextWall(wall, g) {
  const d = new Date(wall);
  if (g === 'hourly') return wall + 3600e3;
  if (g === 'daily') return wall + DAY;
  if (g === 'weekly') return wall + 7 * DAY;
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
function bucketName(zone, wall) {
  const off = offsetMin(zone, zonedToUtc(zone, wall));
  const sign = off < 0 ? '-' : '+';
  const a = Math.abs(off);
  return `${new Date(wall).toISOString().slice(0, 19)}${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

// ------------------------------------------------------------------ filters
class Bad extends Error { constructor(parameter, message) { super(message); this.parameter = parameter; } }
function parseFilters(get, getAll) {
  const tz = get('timezone') || 'UTC';
  try { new Intl.DateTimeFormat('en-US', { timeZone: tz }); } catch { throw new Bad('timezone', `unknown time zone ${tz}`); }
  const range = get('date_range') || '30';
  if (!['7', '30', '90', '365', 'custom'].includes(range)) throw new Bad('date_range', 'date_range must be one of 7, 30, 90, 365, custom');
  let start, end;
  if (range === 'custom') {
    start = get('start_date'); end = get('end_date');
    if (!/^\d{4}-\d{2}-\d{2}$/.test(start || '')) throw new Bad('start_date', 'start_date must be a date YYYY-MM-DD');
    if (!/^\d{4}-\d{2}-\d{2}$/.test(end || '')) throw new Bad('end_date', 'end_date must be a date YYYY-MM-DD');
    if (start > end) throw new Bad('start_date', 'start_date must not be after end_date');
  } else {
    end = ymd(localMs(tz, NOW.getTime()));
    start = ymd(Date.parse(`${end}T00:00:00Z`) - (Number(range) - 1) * DAY);
  }
  const g = get('granularity') || 'daily';
  if (!['hourly', 'daily', 'weekly', 'monthly'].includes(g)) throw new Bad('granularity', 'granularity must be one of hourly, daily, weekly, monthly');
  const list = (k) => getAll(k).flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
  const experiments = [...new Set(list('experiments').map((v) => { if (!/^-?\d+$/.test(v)) throw new Bad('experiments', `experiments: ${v} is not an integer id`); return Number(v); }))].sort((a, b) => a - b);
  const channels = [...new Set(list('channels'))].sort();
  for (const c of channels) if (!PLATFORMS[c]) throw new Bad('channels', `unknown platform ${c}`);
  return { start_date: start, end_date: end, timezone: tz, granularity: g, experiments, channels };
}

function compute(chart, f, opts) {
  const from = zonedToUtc(f.timezone, Date.parse(`${f.start_date}T00:00:00Z`));
  const to = zonedToUtc(f.timezone, Date.parse(`${f.end_date}T00:00:00Z`) + DAY);
  const pass = (s) => (!f.experiments.length || f.experiments.includes(s.bot)) && (!f.channels.length || f.channels.includes(s.platform));
  const inW = (t) => t >= from && t < to;
  const S = sessions.filter(pass);
  const M = messages.filter((m) => pass(m.session) && inW(m.at));
  const R = new Set(M.map((m) => m.session));
  const H = M.filter((m) => m.human);
  const listed = BOTS.filter(([id]) => !f.experiments.length || f.experiments.includes(id));
  const bucketsOf = () => {
    const out = [];
    let w = truncWall(localMs(f.timezone, from), f.granularity);
    const endWall = localMs(f.timezone, to);
    while (w < endWall && out.length < 10001) { out.push(w); w = nextWall(w, f.granularity); }
    if (out.length > 10000) throw new Bad('granularity', 'the window would produce more than 10000 buckets');
    return out;
  };
  const keyOf = (t) => truncWall(localMs(f.timezone, t), f.granularity);
  const perBucket = (fn) => {
    const bs = bucketsOf();
    const idx = new Map(bs.map((b, i) => [b, i]));
    const acc = bs.map(() => fn.init());
    fn.each((t, v) => { const i = idx.get(keyOf(t)); if (i !== undefined) fn.add(acc[i], v); });
    return bs.map((b, i) => ({ bucket: bucketName(f.timezone, b), ...fn.done(acc[i]) }));
  };
  const len = (s) => (s.ended - s.created) / 60e3;
  switch (chart) {
    case 'overview': {
      const completed = [...R].filter((s) => s.ended !== null).length;
      const ap = new Set(H.map((m) => m.session.participant)).size;
      return {
        total_chatbots: listed.length, active_chatbots: new Set([...R].map((s) => s.bot)).size,
        total_participants: new Set(S.map((s) => s.participant)).size, active_participants: ap,
        active_sessions: R.size, sessions_started: S.filter((s) => inW(s.created)).length, completed_sessions: completed,
        completion_rate: R.size ? completed / R.size : 0, human_messages: H.length, ai_messages: M.length - H.length,
        total_messages: M.length, avg_messages_per_session: R.size ? M.length / R.size : 0, avg_sessions_per_participant: ap ? R.size / ap : 0,
      };
    }
    case 'active-participants':
      return perBucket({ init: () => new Set(), each: (cb) => H.forEach((m) => cb(m.at, m.session.participant)), add: (a, v) => a.add(v), done: (a) => ({ active_participants: a.size }) });
    case 'message-volume':
      return perBucket({ init: () => ({ h: 0, a: 0 }), each: (cb) => M.forEach((m) => cb(m.at, m.human)), add: (a, v) => { if (v) a.h++; else a.a++; }, done: (a) => ({ human_messages: a.h, ai_messages: a.a, total_messages: a.h + a.a }) });
    case 'session-analytics': {
      const rows = perBucket({ init: () => ({ s: new Set(), p: new Set(), n: 0 }), each: (cb) => { M.forEach((m) => cb(m.at, ['s', m])); S.filter((s) => inW(s.created)).forEach((s) => cb(s.created, ['n'])); }, add: (a, [k, m]) => { if (k === 'n') a.n++; else { a.s.add(m.session); if (m.human) a.p.add(m.session.participant); } }, done: (a) => ({ active_sessions: a.s.size, sessions_started: a.n, active_participants: a.p.size }) });
      return rows;
    }
    case 'bot-performance': {
      let rows = listed.map(([id, name]) => {
        const rs = [...R].filter((s) => s.bot === id);
        const ended = rs.filter((s) => s.ended !== null);
        const msgs = M.filter((m) => m.session.bot === id).length;
        return { chatbot_id: id, chatbot_name: name, participants: new Set(rs.map((s) => s.participant)).size, sessions: rs.length, messages: msgs, avg_session_duration: ended.length ? ended.reduce((a, s) => a + len(s), 0) / ended.length : null, completion_rate: rs.length ? ended.length / rs.length : 0, avg_messages_per_session: rs.length ? msgs / rs.length : 0 };
      });
      const k = opts.order_by; const dir = opts.order_dir === 'asc' ? 1 : -1;
      rows.sort((a, b) => {
        const x = a[k]; const y = b[k];
        if (x === null && y !== null) return 1; if (y === null && x !== null) return -1;
        if (x < y) return -dir; if (x > y) return dir; return a.chatbot_id - b.chatbot_id;
      });
      const total = rows.length; const ps = opts.page_size; const page = opts.page;
      rows = rows.slice((page - 1) * ps, page * ps);
      return { results: rows, total_count: total, page, page_size: ps, total_pages: Math.ceil(total / ps) };
    }
    case 'user-engagement': {
      const by = new Map();
      for (const m of H) {
        const p = by.get(m.session.participant) || { participant_id: m.session.participant, total_messages: 0, sess: new Set(), last: 0 };
        p.total_messages++; p.sess.add(m.session); p.last = Math.max(p.last, m.at); by.set(p.participant_id, p);
      }
      const rows = [...by.values()].map((p) => ({ participant_id: p.participant_id, participant_name: PARTS.find((x) => x.id === p.participant_id).name, total_messages: p.total_messages, total_sessions: p.sess.size, last_activity: new Date(p.last).toISOString().replace('Z', '000Z') }));
      const most = [...rows].sort((a, b) => b.total_messages - a.total_messages || a.participant_id - b.participant_id).slice(0, opts.limit);
      const least = [...rows].sort((a, b) => a.total_messages - b.total_messages || a.participant_id - b.participant_id).slice(0, opts.limit);
      const lens = [...R].filter((s) => s.ended !== null).map(len).sort((a, b) => a - b);
      let dist = [];
      if (lens.length) {
        const lo = lens[0]; const hi = lens[lens.length - 1];
        if (lo === hi) dist = [{ bin_start: lo, bin_end: hi, count: lens.length }];
        else {
          const w = (hi - lo) / 10;
          dist = Array.from({ length: 10 }, (_, i) => ({ bin_start: lo + i * w, bin_end: i === 9 ? hi : lo + (i + 1) * w, count: 0 }));
          for (const v of lens) dist[Math.min(9, Math.floor((v - lo) / w))].count++;
        }
      }
      const pc = (q) => { if (!lens.length) return null; const r = q * (lens.length - 1); const i = Math.floor(r); return lens[i] + (r - i) * ((lens[i + 1] ?? lens[i]) - lens[i]); };
      return { most_active: most, least_active: least, total_participants: rows.length, session_length_distribution: dist, session_length_percentiles: { p50: pc(0.5), p90: pc(0.9), p99: pc(0.99) } };
    }
    case 'channel-breakdown': {
      const plats = new Map();
      for (const s of R) { const p = plats.get(s.platform) || { platform: s.platform, label: PLATFORMS[s.platform] || s.platform, sessions: 0, parts: new Set(), human_messages: 0, ai_messages: 0 }; p.sessions++; plats.set(s.platform, p); }
      for (const m of M) { const p = plats.get(m.session.platform); if (m.human) { p.human_messages++; p.parts.add(m.session.participant); } else p.ai_messages++; }
      const rows = [...plats.values()].sort((a, b) => b.sessions - a.sessions || (a.platform < b.platform ? -1 : 1)).map(({ parts, ...r }) => ({ platform: r.platform, label: r.label, sessions: r.sessions, participants: parts.size, human_messages: r.human_messages, ai_messages: r.ai_messages, session_share: r.sessions / R.size }));
      return { platforms: rows, totals: { sessions: R.size, participants: new Set(H.map((m) => m.session.participant)).size, messages: M.length } };
    }
    case 'tag-analytics': {
      const group = (counts) => {
        const cats = new Map();
        for (const [id, name, cat] of TAGS) { const n = counts.get(id) || 0; if (!n) continue; const c = cats.get(cat) || { category: cat, label: CAT_LABEL[cat], tags: [] }; c.tags.push({ tag_id: id, name, count: n }); cats.set(cat, c); }
        return [...cats.values()].sort((a, b) => (a.label < b.label ? -1 : 1)).map((c) => ({ ...c, tags: c.tags.sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : 1)) }));
      };
      const mc = new Map(); let tagged = 0;
      for (const m of M) { if (m.tags.length) tagged++; for (const t of m.tags) mc.set(t, (mc.get(t) || 0) + 1); }
      const sc = new Map();
      for (const s of R) for (const t of s.tags) sc.set(t, (sc.get(t) || 0) + 1);
      return { message_tags: group(mc), session_tags: group(sc), total_tagged_messages: tagged };
    }
    default: return undefined;
  }
}

function chartOptions(get) {
  const o = { limit: Number(get('limit') || 10), order_by: get('order_by') || 'messages', order_dir: get('order_dir') || 'desc', page: Number(get('page') || 1), page_size: Number(get('page_size') || 10) };
  if (!(o.page_size >= 1 && o.page_size <= 100)) throw new Bad('page_size', 'page_size must be between 1 and 100');
  if (!['chatbot_name', 'participants', 'sessions', 'messages', 'avg_session_duration', 'completion_rate', 'avg_messages_per_session'].includes(o.order_by)) throw new Bad('order_by', `unknown order_by ${o.order_by}`);
  return o;
}

function answer(chart, get, getAll) {
  const f = parseFilters(get, getAll);
  const data = compute(chart, f, chartOptions(get));
  return { chart, filters: f, snapshot: { version: 'mock-1', as_of: AS_OF }, data };
}

function tableOf(chart, data) {
  let rows;
  if (Array.isArray(data)) rows = data;
  else if (chart === 'overview') rows = [data];
  else if (chart === 'bot-performance') rows = data.results;
  else if (chart === 'channel-breakdown') rows = data.platforms;
  else if (chart === 'user-engagement') rows = data.most_active.map((r) => ({ list: 'most_active', participant: crypto.createHash('sha256').update(String(r.participant_id)).digest('hex').slice(0, 12), total_messages: r.total_messages, total_sessions: r.total_sessions, last_activity: r.last_activity }));
  else rows = data.message_tags.flatMap((c) => c.tags.map((t) => ({ kind: 'message', category: c.category, ...t })));
  return rows;
}

function csvOf(rows) {
  const cols = rows.length ? Object.keys(rows[0]) : ['empty'];
  const esc = (v) => { const s = v === null ? '' : String(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  return [cols.join(','), ...rows.map((r) => cols.map((c) => esc(r[c])).join(','))].join('\n') + '\n';
}

// ------------------------------------------------------------------ HTTP
const presets = [];
let presetId = 0;
const MIME = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.md': 'text/plain; charset=utf-8' };
const escapeHtml = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Security-Policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'", ...headers });
  res.end(body);
}
const json = (res, status, v) => send(res, status, JSON.stringify(v), { 'Content-Type': 'application/json' });
const bad = (res, e) => json(res, 400, { error: { code: 'invalid_parameter', parameter: e.parameter, message: e.message } });
const readBody = (req) => new Promise((ok) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => ok(b)); });

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const cookie = /ocs_dash_session=([^;]+)/.exec(req.headers.cookie || '')?.[1];
  const user = cookie && SESSIONS.get(cookie);
  if (p.startsWith('/static/')) {
    const file = path.join(ASSETS, 'static', path.normalize(p.slice(8)).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(path.join(ASSETS, 'static')) || !fs.existsSync(file)) return send(res, 404, 'not found');
    return send(res, 200, fs.readFileSync(file), { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream' });
  }
  if (p === '/login' && req.method === 'GET') {
    return send(res, 200, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head><body><form method="post" action="/login"><label>API key <input type="password" name="key" required></label><button type="submit">Sign in</button></form></body></html>`, { 'Content-Type': 'text/html; charset=utf-8' });
  }
  if (p === '/login' && req.method === 'POST') {
    const key = new URLSearchParams(await readBody(req)).get('key');
    if (key !== KEY) return send(res, 401, 'bad key', { 'Content-Type': 'text/plain' });
    const sid = crypto.randomBytes(16).toString('hex');
    SESSIONS.set(sid, 'qa@example.org');
    return send(res, 303, '', { Location: `/a/${TEAM.slug}/dashboard/`, 'Set-Cookie': `ocs_dash_session=${sid}; HttpOnly; SameSite=Strict; Path=/` });
  }
  const m = /^\/a\/([^/]+)\/dashboard(\/.*)?$/.exec(p);
  if (!m) return send(res, 404, 'not found');
  if (!user) return p.endsWith('/dashboard/') ? send(res, 303, '', { Location: '/login' }) : json(res, 401, { error: { code: 'unauthorized', message: 'sign in' } });
  if (m[1] !== TEAM.slug) return json(res, 404, { error: { code: 'not_found', message: 'not found' } });
  const rest = m[2] || '/';
  if (rest === '/') {
    const html = fs.readFileSync(path.join(ASSETS, 'dashboard.html'), 'utf8')
      .replaceAll('{{team_slug}}', escapeHtml(TEAM.slug)).replaceAll('{{team_name}}', escapeHtml(TEAM.name))
      .replaceAll('{{csrf_token}}', CSRF).replaceAll('{{user}}', escapeHtml(user));
    return send(res, 200, html, { 'Content-Type': 'text/html; charset=utf-8' });
  }
  if (req.method !== 'GET' && req.headers['x-csrf-token'] !== CSRF) return json(res, 403, { error: { code: 'csrf', message: 'missing or wrong CSRF token' } });
  let mm;
  if ((mm = /^\/api\/([a-z-]+)\/?$/.exec(rest)) && req.method === 'GET') {
    if (url.searchParams.get('fail') === mm[1]) return json(res, 500, { error: { code: 'internal', message: 'internal error' } });
    try {
      const a = answer(mm[1], (k) => url.searchParams.get(k), (k) => url.searchParams.getAll(k));
      if (a.data === undefined) return json(res, 404, { error: { code: 'not_found', message: `unknown chart ${mm[1]}` } });
      return setTimeout(() => json(res, 200, a), 60 + Math.random() * 200);
    } catch (e) { return e instanceof Bad ? bad(res, e) : json(res, 500, { error: { code: 'internal', message: String(e) } }); }
  }
  if (rest === '/filters/' && req.method === 'GET') return json(res, 200, presets);
  if (rest === '/filters/save/' && req.method === 'POST') {
    let b; try { b = JSON.parse(await readBody(req)); } catch { return json(res, 400, { error: { code: 'invalid_json', message: 'malformed JSON' } }); }
    if (b.is_default) presets.forEach((x) => { x.is_default = false; });
    let pr = presets.find((x) => x.name === b.name);
    if (pr) Object.assign(pr, { filters: b.filters, is_default: Boolean(b.is_default) });
    else { pr = { id: ++presetId, name: b.name, filters: b.filters, is_default: Boolean(b.is_default), created_at: new Date().toISOString() }; presets.push(pr); }
    return json(res, 201, pr);
  }
  if ((mm = /^\/filters\/load\/(\d+)\/$/.exec(rest))) {
    const pr = presets.find((x) => x.id === Number(mm[1]));
    return pr ? json(res, 200, pr) : json(res, 404, { error: { code: 'not_found', message: 'no such preset' } });
  }
  if ((mm = /^\/filters\/(\d+)\/$/.exec(rest)) && req.method === 'DELETE') {
    const i = presets.findIndex((x) => x.id === Number(mm[1]));
    if (i < 0) return json(res, 404, { error: { code: 'not_found', message: 'no such preset' } });
    presets.splice(i, 1);
    return send(res, 204, '');
  }
  if (rest === '/export/' && req.method === 'POST') {
    let b; try { b = JSON.parse(await readBody(req)); } catch { return json(res, 400, { error: { code: 'invalid_json', message: 'malformed JSON' } }); }
    const fo = b.filters || {};
    const get = (k) => (fo[k] === undefined ? null : Array.isArray(fo[k]) ? fo[k].join(',') : String(fo[k]));
    const getAll = (k) => (fo[k] === undefined ? [] : Array.isArray(fo[k]) ? fo[k].map(String) : [String(fo[k])]);
    try {
      const a = answer(b.chart, get, (k) => getAll(k));
      if (a.data === undefined) return json(res, 404, { error: { code: 'not_found', message: `unknown chart ${b.chart}` } });
      const name = `${TEAM.slug}-${b.chart}-${a.filters.start_date}-${a.filters.end_date}.${b.format}`;
      const rows = tableOf(b.chart, a.data);
      const columns = rows.length ? Object.keys(rows[0]) : [];
      if (b.format === 'json') return send(res, 200, JSON.stringify({ chart: b.chart, snapshot: a.snapshot, columns, rows, ...(b.include_filters ? { filters: a.filters } : {}) }, null, 2), { 'Content-Type': 'application/json', 'Content-Disposition': `attachment; filename="${name}"` });
      const head = b.include_filters ? Object.entries(a.filters).map(([k, v]) => `# ${k}: ${Array.isArray(v) ? v.join(',') : v}\n`).join('') : '';
      return send(res, 200, head + csvOf(rows), { 'Content-Type': 'text/csv; charset=utf-8', 'Content-Disposition': `attachment; filename="${name}"` });
    } catch (e) { return e instanceof Bad ? bad(res, e) : json(res, 500, { error: { code: 'internal', message: String(e) } }); }
  }
  return json(res, 404, { error: { code: 'not_found', message: 'not found' } });
});

if (args.expected) {
  const q = new URLSearchParams(args.query || 'date_range=custom&start_date=2026-10-22&end_date=2026-11-20&granularity=daily&timezone=Europe/Berlin');
  const view = (extra) => {
    const p = new URLSearchParams(q);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return Object.fromEntries(['overview', 'active-participants', 'session-analytics', 'message-volume', 'bot-performance', 'user-engagement', 'channel-breakdown', 'tag-analytics'].map((c) => [c, answer(c, (k) => p.get(k), (k) => p.getAll(k)).data]));
  };
  const base = view({});
  const platform = base['channel-breakdown'].platforms[0]?.platform ?? 'web';
  fs.writeFileSync(args.expected, JSON.stringify({ base, weekly: view({ granularity: 'weekly' }), channel: { platform, charts: view({ granularity: 'weekly', channels: platform }) } }, null, 1));
}
server.listen(PORT, '127.0.0.1', () => console.log(`mock ocs-dash on http://127.0.0.1:${PORT}/ (key ${KEY}, team ${TEAM.slug})`));
