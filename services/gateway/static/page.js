// The page at `/`: logs in through the gateway's contract routes and shows what each side holds
// and each hop's credential check (from the Server-Timing entries every service adds). Plain DOM,
// no framework, no inline script (the Content-Security-Policy allows only this file), and text
// only ever set with textContent.
'use strict';

const HOPS = ['gateway', 'orders', 'auth'];
const state = { kind: null, csrf: null, token: null, expiresIn: null, design: null, timer: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

// One Server-Timing entry of ours: service;desc="credential=jwt carrier=header ...";dur=0.012
function parseTimings(header) {
  if (!header) return [];
  const entries = [];
  for (const part of header.split(',')) {
    const match = /^\s*([\w.-]+)\s*;\s*desc="([^"]*)"\s*;\s*dur=([0-9.]+)\s*$/.exec(part);
    if (!match) continue;
    const desc = Object.fromEntries(match[2].split(' ').map((pair) => pair.split('=')));
    entries.push({ service: match[1], ...desc, dur: Number(match[3]) });
  }
  return entries.sort((a, b) => HOPS.indexOf(a.service) - HOPS.indexOf(b.service));
}

// A request through the gateway, with the credential the current login uses.
async function call(method, path, { body = null, bearer = state.token } = {}) {
  const headers = {};
  if (body !== null) headers['Content-Type'] = 'application/json';
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  const started = performance.now();
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === null ? undefined : JSON.stringify(body),
  });
  const ms = performance.now() - started;
  let data = null;
  const type = response.headers.get('Content-Type') || '';
  if (type.includes('json')) data = await response.json();
  return { status: response.status, data, ms, timings: parseTimings(response.headers.get('Server-Timing')) };
}

function setStatus(id, text, bad = false) {
  $(id).textContent = text;
  $(id).classList.toggle('bad', bad);
}

function credentials() {
  return { username: $('username').value, password: $('password').value };
}

// -- the design ------------------------------------------------------------------------------

async function loadDesign() {
  const response = await fetch('/design', { cache: 'no-store' });
  state.design = await response.json();
  const list = $('design');
  for (const name of ['SESSION_CACHE', 'GATEWAY_TOKEN_EXCHANGE', 'JWT_REVOCATION', 'GATEWAY_EDGE_AUTH', 'SERVER_TIMING']) {
    list.append(el('div', { 'data-setting': name }, el('dt', {}, name), el('dd', {}, state.design[name])));
  }
}

// -- logging in ------------------------------------------------------------------------------

async function signUp() {
  const result = await call('POST', '/auth/users', { body: credentials(), bearer: null });
  if (result.status === 201) setStatus('login-status', `Signed up as ${result.data.username}; now log in.`);
  else setStatus('login-status', `Sign-up refused (${result.status}): ${result.data && result.data.detail}`, true);
}

async function logIn(kind) {
  const path = kind === 'session' ? '/auth/session' : '/auth/token';
  const body = { ...credentials(), ...(kind === 'cookie' ? { carrier: 'cookie' } : {}) };
  const result = await call('POST', path, { body, bearer: null });
  if (result.status !== 200) {
    setStatus('login-status', `Login refused (${result.status}): ${result.data && result.data.detail}`, true);
    return;
  }
  Object.assign(state, {
    kind,
    csrf: result.data.csrf_token || null,
    token: kind === 'bearer' ? result.data.access_token : null,
    expiresIn: result.data.expires_in || null,
  });
  document.querySelectorAll('[data-login]').forEach((b) => b.classList.toggle('active', b.dataset.login === kind));
  for (const id of ['list-orders', 'create-order', 'logout']) $(id).disabled = false;
  $('timeline').replaceChildren();
  $('refusals').replaceChildren();
  setStatus('logout-status', '');
  setStatus('login-status', `Logged in as ${body.username}: ${describeKind(kind)}.`);
  showBrowser();
  await showServer();
}

function describeKind(kind) {
  return { session: 'a session, the sid cookie', bearer: 'a JWT this page sends in the Authorization header', cookie: 'a JWT in the HttpOnly at cookie' }[kind];
}

// -- what the browser holds ------------------------------------------------------------------

function decodeSegment(segment) {
  const text = atob(segment.replace(/-/g, '+').replace(/_/g, '/'));
  return JSON.parse(decodeURIComponent(Array.from(text, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('')));
}

function showBrowser() {
  const rules = state.design.cookies;
  const held = { session: [rules.session], cookie: [rules.access_token, rules.refresh_token], bearer: [] }[state.kind];
  const rows = held.map((rule) => {
    const maxAge = rule.max_age === 'expires_in' ? String(state.expiresIn) : 'none: ends with the browser';
    const readable = document.cookie.split('; ').some((c) => c.startsWith(`${rule.name}=`));
    return el('tr', { 'data-cookie': rule.name },
      el('td', {}, el('code', {}, rule.name)), el('td', { 'data-flag': 'httponly' }, rule.httponly ? 'yes' : 'no'),
      el('td', { 'data-flag': 'samesite' }, rule.samesite), el('td', { 'data-flag': 'secure' }, rule.secure ? 'yes' : 'no'),
      el('td', { 'data-flag': 'path' }, rule.path), el('td', { 'data-flag': 'max-age' }, maxAge),
      el('td', { 'data-flag': 'readable' }, readable ? 'yes' : 'no: HttpOnly'));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 7 }, 'No cookie: the token lives in this page\'s memory (a reload loses it).')));
  $('cookies').tBodies[0].replaceChildren(...rows);
  $('document-cookie').textContent = `document.cookie, all this page's script can see of them: "${document.cookie}"`;
  const token = $('token');
  if (state.kind === 'bearer') {
    const [header, claims] = state.token.split('.').slice(0, 2).map(decodeSegment);
    const bytes = new TextEncoder().encode(`Authorization: Bearer ${state.token}\r\n`).length;
    token.replaceChildren(
      el('p', {}, 'The access token, decoded (anyone holding it can read this; only the signature protects it):'),
      el('pre', { id: 'token-header' }, JSON.stringify(header, null, 2)),
      el('pre', { id: 'token-claims' }, JSON.stringify(claims, null, 2)),
      el('p', {}, 'Sent on every request: ', el('strong', { id: 'token-bytes', 'data-bytes': bytes }, `${bytes} bytes`),
        ' of Authorization header.'));
  } else if (state.kind === 'cookie') {
    token.replaceChildren(el('p', {}, 'The access token is in the at cookie: this page cannot read or decode it, and the browser sends it with every request to this site. The page holds only the CSRF token, for unsafe requests.'));
  } else {
    token.replaceChildren(el('p', {}, 'The sid cookie is a random id (32 bytes); the page holds only the CSRF token, for unsafe requests.'));
  }
}

// -- what the server holds -------------------------------------------------------------------

function countdown(until) {
  const seconds = Math.max(0, Math.round((Date.parse(until) - Date.now()) / 1000));
  return `${until} (in ${Math.floor(seconds / 60)} min ${seconds % 60} s)`;
}

async function showServer() {
  clearInterval(state.timer);
  const panel = $('server-state');
  const design = state.design;
  if (state.kind === 'session') {
    const result = await call('GET', '/auth/session');
    if (result.status !== 200) {
      panel.replaceChildren(el('p', { id: 'server-record-gone' }, `No session record (${result.status}).`));
      return;
    }
    const record = result.data;
    const idle = el('dd', { 'data-field': 'idle_expires_at' });
    const absolute = el('dd', { 'data-field': 'absolute_expires_at' });
    const tick = () => { idle.textContent = countdown(record.idle_expires_at); absolute.textContent = countdown(record.absolute_expires_at); };
    tick();
    state.timer = setInterval(tick, 1000);
    const fields = ['sub', 'username', 'created_at'].flatMap((name) => [el('dt', {}, name), el('dd', { 'data-field': name }, record[name])]);
    const notes = [el('p', {}, `The session store holds this record (GET /auth/session, yours only), and every ${design.SESSION_CACHE === 'push' ? 'verifier keeps a copy in memory, dropped within 1 s of a logout' : 'hop reads it from the store on every request'}.`)];
    if (design.GATEWAY_TOKEN_EXCHANGE === 'on') {
      notes.push(el('p', { id: 'hybrid-note' }, 'The hybrid: the gateway exchanges this session for an internal JWT (60 s at most) and sends orders that instead of the cookie.'));
    }
    panel.replaceChildren(el('dl', { id: 'server-record', class: 'record' }, ...fields,
      el('dt', {}, 'idle expiry (slides with use)'), idle, el('dt', {}, 'absolute expiry'), absolute), ...notes);
    return;
  }
  const jti = state.token ? decodeSegment(state.token.split('.')[1]).jti : 'its jti';
  const revocation = design.JWT_REVOCATION === 'push'
    ? `On logout, auth records the revoked jti (${jti}) durably until the token's exp, and pushes it to every verifier's in-memory list.`
    : 'JWT_REVOCATION=off: on logout nothing is recorded, and the token keeps working until its exp.';
  panel.replaceChildren(el('p', { id: 'server-nothing' }, 'Nothing per login: every hop verifies the token\'s signature with the public key.'),
    el('p', { id: 'server-revocation' }, revocation));
}

// -- requests and their hops -----------------------------------------------------------------

function drawTimeline(list, timings, { skippedAfterRefusal = true } = {}) {
  const total = timings.reduce((sum, t) => sum + t.dur, 0) || 1;
  let offset = 0;
  const rows = timings.map((t) => {
    const bar = el('div', { class: 'bar' });
    bar.style.left = `${(offset / total) * 100}%`;
    bar.style.width = `${(t.dur / total) * 100}%`;
    offset += t.dur;
    const cache = t.cache === 'off' ? 'no cache' : `cache ${t.cache}`;
    const store = t.store === '0' ? 'no store round trip' : `${t.store} store round trip`;
    return el('li', { class: t.result, 'data-service': t.service, 'data-result': t.result, 'data-dur': t.dur, 'data-credential': t.credential },
      el('strong', {}, t.service), el('div', { class: 'track' }, bar),
      el('span', {}, el('span', { class: `result-${t.result}` }, t.result), ` ${t.credential} (${t.carrier}), ${cache}, ${store}, ${t.dur.toFixed(3)} ms`));
  });
  const last = timings[timings.length - 1];
  if (skippedAfterRefusal && last && last.result !== 'ok') {
    for (const hop of HOPS.slice(HOPS.indexOf(last.service) + 1, 2)) {
      rows.push(el('li', { class: 'skipped', 'data-service': hop, 'data-result': 'not-reached' },
        el('strong', {}, hop), el('div', { class: 'track' }), el('span', {}, `not reached: the ${last.service} refused first`)));
    }
  }
  list.replaceChildren(...rows);
}

async function request(method) {
  const result = method === 'GET'
    ? await call('GET', '/orders?limit=5')
    : await call('POST', '/orders', { body: { item: 'tea', quantity: 1 } });
  const what = method === 'GET' ? `${(result.data && result.data.orders || []).length} orders` : (result.data && result.data.id ? `order ${result.data.id}` : '');
  setStatus('request-status', `${method} /orders answered ${result.status} in ${result.ms.toFixed(1)} ms ${what}`.trim(), result.status >= 400);
  if (!result.timings.length && state.design.SERVER_TIMING !== 'on') {
    $('timeline').replaceChildren(el('li', {}, 'SERVER_TIMING is off on this stack: no per-hop entries.'));
  } else {
    drawTimeline($('timeline'), result.timings);
  }
  if (state.kind === 'session') await showServer();
}

// -- logout and the refusals -----------------------------------------------------------------

async function logOut() {
  const old = state.token;
  const kind = state.kind;
  const result = await call('POST', '/auth/logout');
  if (result.status !== 204) {
    setStatus('logout-status', `Logout refused (${result.status}).`, true);
    return;
  }
  const loggedOutAt = performance.now();
  clearInterval(state.timer);
  for (const id of ['list-orders', 'create-order', 'logout']) $(id).disabled = true;
  Object.assign(state, { kind: null, csrf: null, token: null });
  setStatus('logout-status', kind === 'bearer'
    ? 'Logged out. The page still holds the old token and sends it to every hop:'
    : 'Logged out: the answer cleared the cookie, so the browser no longer sends it. Every hop:');
  // First refusal per hop, from GET /orders (gateway, orders) and GET /auth/me (auth).
  const seen = new Map();
  const deadline = loggedOutAt + 3000;
  while (performance.now() < deadline) {
    for (const path of ['/orders?limit=1', '/auth/me']) {
      const probe = await call('GET', path, { bearer: old });
      for (const t of probe.timings) {
        const known = seen.get(t.service);
        if (!known || (known.result === 'ok' && t.result !== 'ok')) {
          seen.set(t.service, { ...t, after: performance.now() - loggedOutAt });
        }
      }
    }
    if (seen.size && [...seen.values()].every((t) => t.result !== 'ok')) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const timings = [...seen.values()].sort((a, b) => HOPS.indexOf(a.service) - HOPS.indexOf(b.service));
  drawTimeline($('refusals'), timings, { skippedAfterRefusal: false });
  for (const row of $('refusals').children) {
    const t = seen.get(row.dataset.service);
    const note = t.result === 'ok'
      ? ` still accepted ${Math.round(t.after)} ms after logout (JWT_REVOCATION=${state.design.JWT_REVOCATION}: until exp)`
      : ` refused within ${Math.round(t.after)} ms of logout`;
    row.lastChild.append(note);
  }
  if (!seen.has('orders') && seen.has('gateway') && seen.get('gateway').result !== 'ok') {
    $('refusals').append(el('li', { class: 'skipped', 'data-service': 'orders', 'data-result': 'not-reached' },
      el('strong', {}, 'orders'), el('div', { class: 'track' }), el('span', {}, 'not reached: the gateway refused first')));
  }
  const dump = $('token');
  if (kind === 'bearer') dump.append(el('p', { class: 'note' }, 'The page still holds this token; see step 5.'));
  showBrowserAfterLogout();
}

function showBrowserAfterLogout() {
  $('cookies').tBodies[0].replaceChildren(el('tr', {}, el('td', { colspan: 7 }, 'Logged out: no credential cookie.')));
  $('document-cookie').textContent = `document.cookie: "${document.cookie}"`;
  $('server-state').replaceChildren(el('p', { class: 'note' }, 'Logged out.'));
}

// -- wiring ----------------------------------------------------------------------------------

function guarded(action) {
  return () => action().catch((error) => setStatus('login-status', `The page failed: ${error}`, true));
}

document.addEventListener('DOMContentLoaded', () => {
  $('use-demo').addEventListener('click', () => { $('username').value = 'demo'; $('password').value = 'demo-password'; });
  $('signup').addEventListener('click', guarded(signUp));
  document.querySelectorAll('[data-login]').forEach((button) => {
    button.addEventListener('click', guarded(() => logIn(button.dataset.login)));
  });
  $('list-orders').addEventListener('click', guarded(() => request('GET')));
  $('create-order').addEventListener('click', guarded(() => request('POST')));
  $('logout').addEventListener('click', guarded(logOut));
  $('login-form').addEventListener('submit', (event) => event.preventDefault());
  guarded(loadDesign)();
});
