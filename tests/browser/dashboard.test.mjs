// Browser test of the dashboard page: a real Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core (from web/node_modules) against
// a running server.
//
//   BASE_URL=http://127.0.0.1:8080 LOGIN_KEY=... TEAM_SLUG=... \
//   EXPECTED_JSON=expected.json FILTER_QUERY='date_range=custom&start_date=...' \
//   node tests/browser/dashboard.test.mjs
//
// EXPECTED_JSON holds the `data` of every chart as the engine computes it:
// {"base": {chart: data} for FILTER_QUERY, "weekly": {...} for FILTER_QUERY
// with granularity=weekly, "channel": {"platform": P, "charts": {...}} for
// weekly and channels=P}. A flat {chart: data} map is read as "base" only.
// tests/browser.rs builds a snapshot, starts `ocs-dash serve`, writes that
// file with the engine and runs this script; tests/browser/mock-server.mjs
// stands in for the server while working on the page.
//
// Prints one line per check and a closing `N passed, M failed`; exits 1 on
// any failure. Screenshots, downloads and a log go to tests/out/browser/.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const requireWeb = createRequire(path.join(ROOT, 'web/package.json'));

const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8089').replace(/\/$/, '');
const LOGIN_KEY = env('LOGIN_KEY', 'mock-key');
const TEAM = env('TEAM_SLUG', 'demo');
const FILTER_QUERY = env('FILTER_QUERY', 'date_range=custom&start_date=2026-10-22&end_date=2026-11-20&granularity=daily&timezone=Europe/Berlin');
const EXPECTED_JSON = env('EXPECTED_JSON', '');
const OUT = path.resolve(ROOT, env('OUT_DIR', 'tests/out/browser'));
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const TIMEOUT = Number(env('STEP_TIMEOUT_MS', '30000'));
const DASH = `${BASE_URL}/a/${encodeURIComponent(TEAM)}/dashboard/`;
const CHARTS = ['overview', 'active-participants', 'session-analytics', 'message-volume', 'bot-performance', 'user-engagement', 'channel-breakdown', 'tag-analytics'];

// ------------------------------------------------------------------ harness

const results = [];
let aborted = null;
const logLines = [];
const log = (s) => { logLines.push(s); console.log(s); };

async function check(name, fn, { critical = false } = {}) {
  if (aborted) { results.push({ name, ok: false }); log(`not ok - ${name} (not run: ${aborted})`); return; }
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    log(`ok - ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    log(`not ok - ${name}\n    ${String(e?.stack || e).split('\n').slice(0, 6).join('\n    ')}`);
    if (critical) aborted = `"${name}" failed`;
  }
}

class AssertionError extends Error {}
function assert(cond, msg) { if (!cond) throw new AssertionError(msg); }

/** Equal JSON, numbers within 1e-9 relative (floats from two engines' arithmetic). */
function diff(a, b, at = '$') {
  if (typeof a === 'number' && typeof b === 'number') {
    const tol = 1e-9 * Math.max(Math.abs(a), Math.abs(b), 1);
    return Math.abs(a - b) <= tol ? null : `${at}: ${a} vs expected ${b}`;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b)) return `${at}: ${JSON.stringify(a)?.slice(0, 80)} vs expected ${JSON.stringify(b)?.slice(0, 80)}`;
    if (a.length !== b.length) return `${at}: ${a.length} items vs expected ${b.length}`;
    for (let i = 0; i < a.length; i++) { const d = diff(a[i], b[i], `${at}[${i}]`); if (d) return d; }
    return null;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort(); const kb = Object.keys(b).sort();
    if (ka.join() !== kb.join()) return `${at}: keys ${ka} vs expected ${kb}`;
    for (const k of ka) { const d = diff(a[k], b[k], `${at}.${k}`); if (d) return d; }
    return null;
  }
  return a === b ? null : `${at}: ${JSON.stringify(a)} vs expected ${JSON.stringify(b)}`;
}
function assertSame(actual, expected, what) {
  const d = diff(actual, expected);
  assert(!d, `${what}: ${d}`);
}
/** A DOM data-value against an expected number (or null ↔ ''). */
function assertValue(raw, expected, what) {
  if (expected === null || expected === undefined) { assert(raw === '' || raw === null, `${what}: shows ${raw}, expected nothing`); return; }
  if (typeof expected === 'number') { assertSame(Number(raw), expected, what); return; }
  assert(String(raw) === String(expected), `${what}: ${raw} vs expected ${expected}`);
}

// ------------------------------------------------------------------ expected data

function loadExpected() {
  if (!EXPECTED_JSON) return null;
  const raw = JSON.parse(fs.readFileSync(EXPECTED_JSON, 'utf8'));
  if (raw.base) return raw;
  return { base: raw };
}

// ------------------------------------------------------------------ page helpers

async function waitIdle(page, afterLoads = 0) {
  await page.waitForFunction((n) => window.__dashboard && !window.__dashboard.loading && window.__dashboard.loads > n, afterLoads, { timeout: TIMEOUT });
}
const loads = (page) => page.evaluate(() => window.__dashboard?.loads ?? 0);
const lastData = (page) => page.evaluate(() => window.__lastData);
const lastFilters = (page) => page.evaluate(() => window.__lastFilters);
const cardStates = (page) => page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map((c) => [c.dataset.chart, c.dataset.state])));

async function openDashboard(page, query) {
  await page.goto(query === undefined ? DASH : `${DASH}?${query}`, { waitUntil: 'domcontentloaded' });
  await waitIdle(page);
}

async function errorsOnPage(page) {
  return page.evaluate(() => [...document.querySelectorAll('[data-chart][data-state="error"]')].map((c) => `${c.dataset.chart}: ${c.querySelector('.state-error .small')?.textContent}`));
}

/** Every chart's number on screen and in Chart.js against one view's expected data. */
async function assertView(page, expected, label) {
  const states = await cardStates(page);
  for (const c of CHARTS) assert(states[c] === 'ready' || states[c] === 'empty', `${label}: ${c} is ${states[c]}: ${(await errorsOnPage(page)).join('; ')}`);
  const data = await lastData(page);
  for (const c of CHARTS) if (expected[c] !== undefined) assertSame(data[c], expected[c], `${label}: __lastData["${c}"]`);
  const seen = await page.evaluate(() => {
    const q = (s) => document.querySelector(s);
    const qa = (s) => [...document.querySelectorAll(s)];
    const cells = (tr) => Object.fromEntries([...tr.querySelectorAll('[data-field]')].map((td) => [td.dataset.field, td.dataset.value]));
    const ds = (name) => { const ch = window.__charts[name]; return ch ? { type: ch.config.type, labels: ch.data.labels, sets: ch.data.datasets.map((d) => ({ label: d.label, data: [...d.data] })) } : null; };
    return {
      overview: Object.fromEntries(qa('[data-testid^="overview-"]').map((n) => [n.dataset.testid.slice(9), n.dataset.value])),
      bots: qa('[data-testid="bot-row"]').map((tr) => ({ id: tr.dataset.chatbotId, ...cells(tr) })),
      botInfo: { ...q('[data-testid="bot-pager-info"]').dataset },
      most: qa('[data-testid="most-active-row"]').map((tr) => ({ id: tr.dataset.participantId, ...cells(tr) })),
      least: qa('[data-testid="least-active-row"]').map((tr) => ({ id: tr.dataset.participantId, ...cells(tr) })),
      pct: { p50: q('[data-testid="p50"]').dataset.value, p90: q('[data-testid="p90"]').dataset.value, p99: q('[data-testid="p99"]').dataset.value },
      engagedTotal: q('[data-testid="engagement-total_participants"]').dataset.value,
      channels: qa('[data-testid="channel-row"]').map((tr) => ({ platform: tr.dataset.platform, ...cells(tr) })),
      channelTotals: cells(q('[data-testid="channel-totals"]') || document.createElement('tr')),
      messageTags: qa('[data-testid="message-category"]').map((s) => ({ category: s.dataset.category, tags: [...s.querySelectorAll('[data-testid="message-tag"]')].map((li) => [Number(li.dataset.tagId), Number(li.dataset.value)]) })),
      sessionTags: qa('[data-testid="session-category"]').map((s) => ({ category: s.dataset.category, tags: [...s.querySelectorAll('[data-testid="session-tag"]')].map((li) => [Number(li.dataset.tagId), Number(li.dataset.value)]) })),
      totalTagged: q('[data-testid="total-tagged-messages"]').dataset.value,
      charts: Object.fromEntries(['active-participants', 'session-analytics', 'message-volume', 'user-engagement', 'channel-breakdown'].map((n) => [n, ds(n)])),
    };
  });

  const ov = expected.overview;
  if (ov) for (const [k, v] of Object.entries(ov)) assertValue(seen.overview[k], v, `${label}: overview card ${k}`);

  const ap = expected['active-participants'];
  if (ap) {
    const ch = seen.charts['active-participants'];
    assert(ch && ch.labels.length === ap.length, `${label}: active participants chart has ${ch?.labels.length} points, expected ${ap.length}`);
    assertSame(ch.sets[0].data, ap.map((r) => r.active_participants), `${label}: active participants dataset`);
  }
  const sa = expected['session-analytics'];
  if (sa) {
    const ch = seen.charts['session-analytics'];
    assert(ch && ch.labels.length === sa.length, `${label}: sessions chart has ${ch?.labels.length} buckets, expected ${sa.length}`);
    const by = Object.fromEntries(ch.sets.map((s) => [s.label, s.data]));
    assertSame(by['Active sessions'], sa.map((r) => r.active_sessions), `${label}: active sessions dataset`);
    assertSame(by['Sessions started'], sa.map((r) => r.sessions_started), `${label}: sessions started dataset`);
    assertSame(by['Active participants'], sa.map((r) => r.active_participants), `${label}: session chart participants dataset`);
  }
  const mv = expected['message-volume'];
  if (mv) {
    const ch = seen.charts['message-volume'];
    assert(ch && ch.labels.length === mv.length, `${label}: message chart has ${ch?.labels.length} buckets, expected ${mv.length}`);
    const by = Object.fromEntries(ch.sets.map((s) => [s.label, s.data]));
    assertSame(by['Human messages'], mv.map((r) => r.human_messages), `${label}: human messages dataset`);
    assertSame(by['Bot messages'], mv.map((r) => r.ai_messages), `${label}: bot messages dataset`);
  }
  const bp = expected['bot-performance'];
  if (bp) {
    assert(seen.bots.length === bp.results.length, `${label}: bot table has ${seen.bots.length} rows, expected ${bp.results.length}`);
    bp.results.forEach((r, i) => {
      const row = seen.bots[i];
      assert(Number(row.id) === r.chatbot_id, `${label}: bot row ${i} is chatbot ${row.id}, expected ${r.chatbot_id}`);
      for (const k of ['chatbot_name', 'participants', 'sessions', 'messages', 'avg_session_duration', 'completion_rate', 'avg_messages_per_session']) assertValue(row[k], r[k], `${label}: bot ${r.chatbot_id} ${k}`);
    });
    assertValue(seen.botInfo.totalCount, bp.total_count, `${label}: bot table total_count`);
    assertValue(seen.botInfo.totalPages, bp.total_pages, `${label}: bot table total_pages`);
  }
  const ue = expected['user-engagement'];
  if (ue) {
    for (const [rows, exp, which] of [[seen.most, ue.most_active, 'most active'], [seen.least, ue.least_active, 'least active']]) {
      assert(rows.length === exp.length, `${label}: ${which} has ${rows.length} rows, expected ${exp.length}`);
      exp.forEach((r, i) => {
        assert(Number(rows[i].id) === r.participant_id, `${label}: ${which} row ${i} is participant ${rows[i].id}, expected ${r.participant_id}`);
        for (const k of ['participant_name', 'total_messages', 'total_sessions', 'last_activity']) assertValue(rows[i][k], r[k], `${label}: ${which} ${r.participant_id} ${k}`);
      });
    }
    for (const k of ['p50', 'p90', 'p99']) assertValue(seen.pct[k], ue.session_length_percentiles[k], `${label}: session length ${k}`);
    assertValue(seen.engagedTotal, ue.total_participants, `${label}: engaged participants`);
    const ch = seen.charts['user-engagement'];
    assertSame(ch.sets[0].data, ue.session_length_distribution.map((b) => b.count), `${label}: session length histogram`);
  }
  const cb = expected['channel-breakdown'];
  if (cb) {
    assert(seen.channels.length === cb.platforms.length, `${label}: channel table has ${seen.channels.length} rows, expected ${cb.platforms.length}`);
    cb.platforms.forEach((r, i) => {
      const row = seen.channels[i];
      assert(row.platform === (r.platform ?? ''), `${label}: channel row ${i} is ${row.platform}, expected ${r.platform}`);
      assertValue(row.label, r.label ?? r.platform ?? 'Unknown', `${label}: channel ${r.platform} label`);
      assertValue(row.sessions, r.sessions, `${label}: channel ${r.platform} sessions`);
      assertValue(row.session_share, r.session_share, `${label}: channel ${r.platform} share`);
      assertValue(row.participants, r.participants, `${label}: channel ${r.platform} participants`);
      assertValue(row.messages, r.human_messages + r.ai_messages, `${label}: channel ${r.platform} messages`);
    });
    for (const k of ['sessions', 'participants', 'messages']) assertValue(seen.channelTotals[k], cb.totals[k], `${label}: channel totals ${k}`);
    assertSame(seen.charts['channel-breakdown'].sets[0].data, cb.platforms.map((r) => r.sessions), `${label}: channel doughnut`);
  }
  const ta = expected['tag-analytics'];
  if (ta) {
    const shape = (groups) => groups.map((g) => ({ category: g.category, tags: g.tags.map((t) => [t.tag_id, t.count]) }));
    assertSame(seen.messageTags, shape(ta.message_tags), `${label}: message tags on screen`);
    assertSame(seen.sessionTags, shape(ta.session_tags), `${label}: session tags on screen`);
    assertValue(seen.totalTagged, ta.total_tagged_messages, `${label}: tagged messages`);
  }
}

const queryOf = (page) => new URL(page.url()).searchParams;
async function waitForUrl(page, pred, what) {
  const t0 = Date.now();
  while (Date.now() - t0 < TIMEOUT) {
    if (pred(queryOf(page))) return;
    await page.waitForTimeout(50);
  }
  throw new AssertionError(`the URL never showed ${what}: ${page.url()}`);
}

async function download(page, testid, saveAs) {
  const [dl] = await Promise.all([
    page.waitForEvent('download', { timeout: TIMEOUT }),
    page.click(`[data-testid="${testid}"]`),
  ]);
  const file = path.join(OUT, saveAs || dl.suggestedFilename());
  await dl.saveAs(file);
  return { file, name: dl.suggestedFilename(), bytes: fs.readFileSync(file) };
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

// ------------------------------------------------------------------ main

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  let playwright;
  try { playwright = requireWeb('playwright-core'); } catch {
    console.error('playwright-core is not installed: run `bash scripts/build-assets.sh` (npm ci in web/)');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const expected = loadExpected();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ocs-dash-chromium-'));
  const context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1440, height: 900 },
    acceptDownloads: true,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] || await context.newPage();

  const origin = new URL(BASE_URL).origin;
  const consoleErrors = [];
  const external = [];
  const requests = [];
  let allowHttpErrors = false;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    if (allowHttpErrors && /Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
    // The browser's own favicon probe (e.g. on the sign-in page) is not the page's doing.
    if (/status of 404/.test(text) && /\/favicon\.ico$/.test(m.location()?.url || '')) return;
    consoleErrors.push(`${text} (${m.location()?.url || ''})`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  context.on('request', (r) => {
    const u = r.url();
    requests.push(u);
    if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) external.push(u);
  });

  try {
    await check('the dashboard needs a sign-in', async () => {
      const res = await page.goto(DASH, { waitUntil: 'domcontentloaded' });
      const onLogin = new URL(page.url()).pathname.startsWith('/login');
      assert(onLogin || res.status() === 401, `unauthenticated dashboard answered ${res.status()} at ${page.url()}`);
      assert(!(await page.$('[data-chart="overview"]')), 'dashboard shown without signing in');
    });

    await check('sign in at /login with the API key', async () => {
      await page.goto(`${BASE_URL}/login`, { waitUntil: 'domcontentloaded' });
      const input = page.locator('input[type="password"], input[name="key"], input[name="api_key"], input[type="text"]').first();
      await input.fill(LOGIN_KEY);
      const submit = page.locator('button[type="submit"], input[type="submit"], form button').first();
      await Promise.all([
        page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: TIMEOUT }),
        (await submit.count()) ? submit.click() : input.press('Enter'),
      ]);
      const cookies = await context.cookies(BASE_URL);
      assert(cookies.length > 0, 'no session cookie after signing in');
      assert(cookies.every((c) => c.httpOnly), `session cookie not HttpOnly: ${cookies.map((c) => c.name)}`);
    }, { critical: true });

    await check('the dashboard loads every chart for FILTER_QUERY', async () => {
      await openDashboard(page, FILTER_QUERY);
      const states = await cardStates(page);
      for (const c of CHARTS) assert(['ready', 'empty'].includes(states[c]), `${c} is ${states[c]}: ${(await errorsOnPage(page)).join('; ')}`);
      const want = new URLSearchParams(FILTER_QUERY);
      const f = (await lastFilters(page)).overview;
      for (const k of ['start_date', 'end_date', 'timezone', 'granularity']) if (want.get(k)) assert(f[k] === want.get(k), `resolved ${k} ${f[k]} vs URL ${want.get(k)}`);
      assert(await page.$eval('#granularity', (s) => s.value) === (want.get('granularity') || 'daily'), 'granularity control does not show the URL value');
      if (want.get('timezone')) assert(await page.$eval('#timezone', (s) => s.value) === want.get('timezone'), 'time zone control does not show the URL value');
      if (want.get('start_date')) assert(await page.$eval('#start_date', (s) => s.value) === want.get('start_date'), 'start date control does not show the URL value');
      const asOf = await page.$eval('[data-testid="as-of"]', (n) => ({ text: n.textContent, iso: n.dataset.asOf }));
      assert(asOf.iso && /^Data as of /.test(asOf.text), `no "data as of" shown: ${asOf.text}`);
      const title = await page.title();
      assert(!title.includes('{{'), `template placeholder left in the title: ${title}`);
      await page.screenshot({ path: path.join(OUT, 'desktop.png'), fullPage: true });
    }, { critical: true });

    if (expected) {
      for (const c of CHARTS) {
        await check(`${c}: numbers on the page match the engine`, async () => {
          await assertView(page, { [c]: expected.base[c] }, 'fixed filters');
        });
      }
    }

    await check('chatbot filter: one chatbot\'s numbers agree with its table row', async () => {
      const base = (await lastData(page))['bot-performance'].results;
      const bot = [...base].sort((a, b) => b.messages - a.messages)[0];
      assert(bot, 'no chatbot rows to pick from');
      let before = await loads(page);
      await page.click('#experiments summary');
      await page.check(`[data-testid="experiment-option-${bot.chatbot_id}"]`);
      await page.keyboard.press('Escape');
      await waitForUrl(page, (q) => q.get('experiments') === String(bot.chatbot_id), `experiments=${bot.chatbot_id}`);
      await waitIdle(page, before);
      const d = await lastData(page);
      assertSame((await lastFilters(page)).overview.experiments, [bot.chatbot_id], 'resolved experiments');
      assert(d.overview.total_chatbots === 1, `total_chatbots ${d.overview.total_chatbots} for one chatbot`);
      assert(d.overview.total_messages === bot.messages, `overview messages ${d.overview.total_messages} vs the row's ${bot.messages}`);
      assert(d.overview.active_sessions === bot.sessions, `overview sessions ${d.overview.active_sessions} vs the row's ${bot.sessions}`);
      assert(await page.getAttribute('[data-testid="overview-total_messages"]', 'data-value') === String(bot.messages), 'overview card not updated');
      const rows = await page.$$eval('[data-testid="bot-row"]', (trs) => trs.map((tr) => tr.dataset.chatbotId));
      assertSame(rows, [String(bot.chatbot_id)], 'bot table rows');
      assert((await page.textContent('#experiments summary')).includes(bot.chatbot_name), 'chatbot picker does not name the chosen chatbot');
      before = await loads(page);
      await page.click('#experiments summary');
      await page.click('#experiments [data-clear]');
      await page.keyboard.press('Escape');
      await waitForUrl(page, (q) => !q.has('experiments'), 'no experiments');
      await waitIdle(page, before);
      if (expected) await assertView(page, { overview: expected.base.overview }, 'chatbot filter cleared');
    });

    await check('granularity → weekly re-draws the charts and updates the URL', async () => {
      const before = await loads(page);
      const daily = await lastData(page);
      await page.selectOption('#granularity', 'weekly');
      await waitForUrl(page, (q) => q.get('granularity') === 'weekly', 'granularity=weekly');
      await waitIdle(page, before);
      const f = (await lastFilters(page))['message-volume'];
      assert(f.granularity === 'weekly', `charts still answer for ${f.granularity}`);
      const q = queryOf(page);
      const want = new URLSearchParams(FILTER_QUERY);
      for (const k of ['start_date', 'end_date', 'timezone']) if (want.get(k)) assert(q.get(k) === want.get(k), `URL lost ${k}: ${page.url()}`);
      const weekly = await lastData(page);
      assert(weekly['message-volume'].length < daily['message-volume'].length || daily['message-volume'].length <= 7, 'weekly buckets are not fewer than daily ones');
      assert(sum(weekly['message-volume'].map((r) => r.total_messages)) === sum(daily['message-volume'].map((r) => r.total_messages)), 'weekly message total differs from daily');
      if (expected?.weekly) await assertView(page, expected.weekly, 'weekly');
    });

    const platform = expected?.channel?.platform
      || (await lastData(page))['channel-breakdown']?.platforms?.[0]?.platform || 'web';
    await check(`channel filter (${platform}) re-draws the charts and updates the URL`, async () => {
      const before = await loads(page);
      await page.click('#channels summary');
      await page.check(`[data-testid="channel-option-${platform}"]`);
      await page.keyboard.press('Escape');
      await waitForUrl(page, (q) => q.get('channels') === platform, `channels=${platform}`);
      await waitIdle(page, before);
      const f = await lastFilters(page);
      for (const c of CHARTS) assertSame(f[c].channels, [platform], `${c} answered for channels`);
      const data = await lastData(page);
      for (const r of data['channel-breakdown'].platforms) assert(r.platform === platform, `channel breakdown still lists ${r.platform}`);
      assert((await page.textContent('#channels summary')).trim().length > 0, 'channel picker shows no summary');
      if (expected?.channel?.charts) await assertView(page, expected.channel.charts, `weekly + ${platform}`);
    });

    await check('chatbot table sorts on the server by a clicked column', async () => {
      const seen = [];
      const onReq = (r) => { if (r.url().includes('/api/bot-performance/')) seen.push(new URL(r.url()).searchParams); };
      page.on('request', onReq);
      const names = async () => page.$$eval('[data-testid="bot-row"] [data-field="chatbot_name"]', (tds) => tds.map((td) => td.dataset.value));
      const cmp = (a, b) => { const x = [...a].map((c) => c.codePointAt(0)); const y = [...b].map((c) => c.codePointAt(0)); for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i]; return x.length - y.length; };
      let before = await loads(page);
      await page.click('th[data-sort="chatbot_name"] button');
      await waitIdle(page, before);
      const asc = await names();
      for (let i = 1; i < asc.length; i++) assert(cmp(asc[i - 1], asc[i]) <= 0, `not ascending: ${asc[i - 1]} before ${asc[i]}`);
      assert(await page.getAttribute('th[data-sort="chatbot_name"]', 'aria-sort') === 'ascending', 'aria-sort not ascending');
      before = await loads(page);
      await page.click('th[data-sort="chatbot_name"] button');
      await waitIdle(page, before);
      const desc = await names();
      for (let i = 1; i < desc.length; i++) assert(cmp(desc[i - 1], desc[i]) >= 0, `not descending: ${desc[i - 1]} before ${desc[i]}`);
      page.off('request', onReq);
      assert(seen.some((q) => q.get('order_by') === 'chatbot_name' && q.get('order_dir') === 'asc'), 'no request with order_by=chatbot_name&order_dir=asc');
      assert(seen.some((q) => q.get('order_dir') === 'desc' && q.get('order_by') === 'chatbot_name'), 'no request with order_dir=desc');
      const d = (await lastData(page))['bot-performance'];
      assert(d.page === 1 && d.results.length <= d.page_size, `unexpected page ${d.page} / ${d.results.length} rows`);
    });

    const presetName = `Browser test ${Date.now()}`;
    let presetId = null;
    await check('save a preset (weekly + channel) as the default view', async () => {
      await page.click('[data-testid="preset-save-open"]');
      await page.fill('[data-testid="preset-name"]', presetName);
      await page.check('[data-testid="preset-default"]');
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url().includes('/filters/save/') && r.request().method() === 'POST'),
        page.click('[data-testid="preset-save"]'),
      ]);
      assert(res.status() === 201, `save answered ${res.status()}: ${await res.text()}`);
      const saved = await res.json();
      presetId = saved.id;
      assert(saved.name === presetName && saved.is_default === true, `saved ${JSON.stringify(saved)}`);
      await page.waitForFunction((id) => [...document.querySelectorAll('#preset-select option')].some((o) => o.value === String(id)), presetId);
      const sent = JSON.parse(res.request().postData());
      assert(sent.filters.granularity === 'weekly' && sent.filters.channels.includes(platform), `preset filters ${JSON.stringify(sent.filters)}`);
    });

    await check('Reset, then reopening without filters applies the default preset', async () => {
      let before = await loads(page);
      await page.click('[data-testid="reset"]');
      await waitIdle(page, before);
      assert(![...queryOf(page).keys()].some((k) => ['channels', 'granularity', 'start_date'].includes(k)), `URL still has filters after Reset: ${page.url()}`);
      assert(await page.$eval('#granularity', (s) => s.value) === 'daily', 'Reset did not restore daily');
      assert((await lastFilters(page)).overview.channels.length === 0, 'Reset kept the channel filter');
      await openDashboard(page);
      const f = (await lastFilters(page)).overview;
      assert(f.granularity === 'weekly' && f.channels.join() === platform, `default preset not applied on open: ${JSON.stringify(f)}`);
      assert(await page.$eval('#preset-select', (s) => s.value) === String(presetId), 'default preset not selected in the list');
      if (expected?.channel?.charts) await assertView(page, expected.channel.charts, 'default preset');
    });

    await check('load a preset onto a bookmarked view (round trip)', async () => {
      await openDashboard(page, FILTER_QUERY);
      assert((await lastFilters(page)).overview.granularity === (new URLSearchParams(FILTER_QUERY).get('granularity') || 'daily'), 'URL filters lost to the default preset');
      const before = await loads(page);
      await page.selectOption('#preset-select', String(presetId));
      await page.click('[data-testid="preset-load"]');
      await waitForUrl(page, (q) => q.get('granularity') === 'weekly' && q.get('channels') === platform, 'the preset filters');
      await waitIdle(page, before);
      if (expected?.channel?.charts) await assertView(page, expected.channel.charts, 'loaded preset');
      await page.reload({ waitUntil: 'domcontentloaded' });
      await waitIdle(page);
      const f = (await lastFilters(page)).overview;
      assert(f.granularity === 'weekly' && f.channels.join() === platform, `reload lost the preset view: ${JSON.stringify(f)}`);
    });

    await check('delete the preset', async () => {
      await page.selectOption('#preset-select', String(presetId));
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'DELETE'),
        (async () => { await page.click('[data-testid="preset-delete"]'); await page.click('[data-testid="preset-delete"]'); })(),
      ]);
      assert(res.status() === 204, `delete answered ${res.status()}`);
      await page.waitForFunction((id) => ![...document.querySelectorAll('#preset-select option')].some((o) => o.value === String(id)), presetId);
      const list = await page.evaluate(async (u) => (await fetch(u, { credentials: 'same-origin' })).json(), `${DASH}filters/`);
      assert(!list.some((p) => p.id === presetId), 'preset still listed by the server');
      await openDashboard(page);
      assert((await lastFilters(page)).overview.granularity === 'daily', 'deleted default preset still applied');
    });

    await check('CSV export of message volume (header, filters, one row per bucket)', async () => {
      await openDashboard(page, FILTER_QUERY);
      const { bytes, name } = await download(page, 'export-message-volume-csv', 'message-volume.csv');
      assert(/\.csv$/i.test(name), `download named ${name}`);
      const lines = bytes.toString('utf8').split(/\r?\n/).filter((l) => l !== '');
      const comments = lines.filter((l) => l.startsWith('#'));
      const rows = lines.filter((l) => !l.startsWith('#'));
      const header = rows[0].split(',');
      for (const col of ['bucket', 'human_messages', 'ai_messages', 'total_messages']) assert(header.includes(col), `CSV header ${rows[0]} lacks ${col}`);
      const want = new URLSearchParams(FILTER_QUERY);
      assert(comments.some((l) => want.get('start_date') ? l.includes(want.get('start_date')) : /start_date/.test(l)), `CSV carries no filter comments: ${comments.join(' | ')}`);
      const n = (await lastData(page))['message-volume'].length;
      assert(rows.length - 1 === n, `CSV has ${rows.length - 1} rows, the chart ${n} buckets`);
      const hi = header.indexOf('human_messages');
      const expectedRows = expected?.base?.['message-volume'] || (await lastData(page))['message-volume'];
      assertSame(rows.slice(1).map((r) => Number(r.split(',')[hi])), expectedRows.map((r) => r.human_messages), 'CSV human_messages column');
    });

    await check('JSON export of the overview', async () => {
      const { bytes } = await download(page, 'export-overview-json', 'overview.json');
      const body = JSON.parse(bytes.toString('utf8'));
      assert(body.filters, `JSON export has no filters key: ${Object.keys(body)}`);
      const want = new URLSearchParams(FILTER_QUERY);
      if (want.get('start_date')) assert(body.filters.start_date === want.get('start_date'), `exported filters ${JSON.stringify(body.filters)}`);
      // The server flattens every chart to {columns, rows: [{column: value}]}; the overview is one row.
      assert(Array.isArray(body.rows) && Array.isArray(body.columns), `JSON export has no columns/rows: ${Object.keys(body)}`);
      assert(body.rows.length === 1, `overview export has ${body.rows.length} rows`);
      assertSame(body.rows[0], expected?.base?.overview || (await lastData(page)).overview, 'exported overview row');
    });

    await check('PNG export of a chart', async () => {
      const { bytes, name } = await download(page, 'export-message-volume-png', 'message-volume.png');
      assert(/\.png$/.test(name), `download named ${name}`);
      assert(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'not a PNG');
      assert(bytes.length > 2000, `PNG only ${bytes.length} bytes`);
    });

    await check('an API error shows the API\'s message on each chart', async () => {
      allowHttpErrors = true;
      const bad = FILTER_QUERY.replace(/(^|&)timezone=[^&]*/, '') + '&timezone=Mars/Olympus_Mons';
      const apiMsg = await page.evaluate(async (u) => (await (await fetch(u, { credentials: 'same-origin' })).json()).error.message, `${DASH}api/overview/?${bad}`);
      await openDashboard(page, bad);
      const states = await cardStates(page);
      for (const c of CHARTS) assert(states[c] === 'error', `${c} is ${states[c]} for a bad time zone`);
      const shown = await page.textContent('[data-testid="error-message-overview"]');
      assert(shown === apiMsg, `error shows "${shown}", the API said "${apiMsg}"`);
      await page.screenshot({ path: path.join(OUT, 'error.png') });
      allowHttpErrors = false;
    });

    await check('an empty period shows empty states, not broken charts', async () => {
      await openDashboard(page, 'date_range=custom&start_date=2001-01-01&end_date=2001-01-07&granularity=daily&timezone=UTC');
      const states = await cardStates(page);
      for (const c of ['active-participants', 'message-volume', 'channel-breakdown', 'user-engagement']) assert(states[c] === 'empty', `${c} is ${states[c]} for an empty period`);
      assert(states.overview === 'ready', 'overview not shown for an empty period');
      assert(await page.getAttribute('[data-testid="overview-total_messages"]', 'data-value') === '0', 'overview messages not 0');
      assert(await page.isVisible('[data-testid="empty-message-volume"]'), 'no empty message on message volume');
    });

    await check('phone width (375 px): no horizontal scrolling, screenshot', async () => {
      await page.setViewportSize({ width: 375, height: 812 });
      await openDashboard(page, FILTER_QUERY);
      await page.waitForTimeout(400);
      await page.screenshot({ path: path.join(OUT, 'phone.png'), fullPage: true });
      const { width, culprits } = await page.evaluate(() => ({
        width: document.documentElement.scrollWidth,
        culprits: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 376 && !e.closest('.table-scroll'))
          .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${[...e.classList].join('.')} (${Math.round(e.getBoundingClientRect().right)} px)`),
      }));
      assert(width <= 376, `page is ${width} px wide at 375 px; too wide: ${culprits.join(', ')}`);
      await page.setViewportSize({ width: 1440, height: 900 });
    });

    await check('no console errors and no request to another origin', async () => {
      assert(consoleErrors.length === 0, `console errors:\n      ${consoleErrors.join('\n      ')}`);
      assert(external.length === 0, `external requests: ${external.join(', ')}`);
      assert(requests.some((u) => u.includes('/static/vendor/chart.umd.min.js')), 'Chart.js not loaded from /static/vendor/');
    });
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => { results.push({ name: 'harness', ok: false }); log(`not ok - harness: ${e?.stack || e}`); }).finally(() => {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  const line = `${passed} passed, ${failed} failed`;
  logLines.push(line);
  try { fs.mkdirSync(OUT, { recursive: true }); fs.writeFileSync(path.join(OUT, 'log.txt'), `${logLines.join('\n')}\n`); } catch { /* best effort */ }
  console.log(line);
  process.exit(failed ? 1 : 0);
});
