// The breaker dashboard: tiles kept live from the admin's event stream (read with fetch, so
// that a token travels in the Authorization header, never in a URL). Every text from the
// server is set with textContent: a breaker's name is data, never markup.
'use strict';

(() => {
  const TOKEN_KEY = 'breaker-admin-token';
  const SVG = 'http://www.w3.org/2000/svg';
  const base = new URL('.', location.href);
  const api = (path) => new URL(path, base).toString();
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let role = 'anonymous';
  let operatorActions = false;
  let actions = ['trip', 'reset', 'force_open', 'disable', 'metrics_only', 'normal'];
  let historySpan = 5 * 60 * 1000;
  let clockOffset = 0; // server clock minus this browser's clock, in ms
  let lastEventId = null;
  let controller = null;
  let tokenChanged = null;
  const tiles = new Map();

  const serverNow = () => Date.now() + clockOffset;

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function pct(x) {
    return x === null || x === undefined ? '–' : x.toFixed(1) + ' %';
  }

  function perSecond(x) {
    return x === null || x === undefined ? '–' : (x < 10 ? x.toFixed(1) : Math.round(x).toString());
  }

  function duration(ms) {
    if (ms < 0) ms = 0;
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 120) return Math.round(s) + ' s';
    const m = s / 60;
    if (m < 120) return Math.floor(m) + ' min ' + Math.round(s % 60) + ' s';
    return (m / 60).toFixed(1) + ' h';
  }

  function label(state) {
    return state.replace('_', ' ');
  }

  function setStream(state, text) {
    const s = $('stream');
    s.dataset.state = state;
    s.textContent = text || state;
  }

  function notice(text) {
    const n = $('notice');
    n.hidden = !text;
    n.textContent = text || '';
  }

  function log(text, at) {
    const li = el('li');
    li.appendChild(el('time', null, new Date(at || serverNow()).toLocaleTimeString()));
    li.appendChild(document.createTextNode(text));
    const list = $('log');
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 100) list.removeChild(list.lastChild);
  }

  // ----- tiles -------------------------------------------------------------------------

  function stat(dl, name) {
    dl.appendChild(el('dt', null, name));
    const dd = el('dd');
    dl.appendChild(dd);
    return dd;
  }

  function makeTile(name) {
    const root = el('section', 'tile');
    root.dataset.breaker = name;
    const header = el('header');
    header.appendChild(el('h2', 'name', name));
    const badge = el('span', 'badge');
    header.appendChild(badge);
    root.appendChild(header);
    const dl = el('dl', 'stats');
    const parts = {
      root, badge,
      since: stat(dl, 'in state'),
      retry: stat(dl, 'retry in'),
      failure: stat(dl, 'failure rate'),
      slow: stat(dl, 'slow calls'),
      calls: stat(dl, 'calls / s'),
      rejections: stat(dl, 'rejections / s'),
      totals: stat(dl, 'totals'),
      mode: stat(dl, 'mode'),
    };
    root.appendChild(dl);
    const chart = svg('svg', { class: 'chart', viewBox: '0 0 300 60', preserveAspectRatio: 'none' });
    parts.band = svg('g');
    parts.thresholdFailure = svg('line', { class: 'threshold-failure', x1: 0, x2: 300 });
    parts.thresholdSlow = svg('line', { class: 'threshold-slow', x1: 0, x2: 300 });
    parts.lineFailure = svg('path', { class: 'failure' });
    parts.lineSlow = svg('path', { class: 'slow' });
    for (const p of [parts.band, parts.thresholdFailure, parts.thresholdSlow, parts.lineFailure, parts.lineSlow]) {
      chart.appendChild(p);
    }
    root.appendChild(chart);
    const legend = el('div', 'legend');
    legend.appendChild(el('span', 'f', '— failure rate'));
    legend.appendChild(document.createTextNode('  '));
    legend.appendChild(el('span', 's', '— slow-call rate'));
    parts.legendSpan = el('span', null, '');
    legend.appendChild(parts.legendSpan);
    root.appendChild(legend);
    parts.config = el('div', 'config');
    root.appendChild(parts.config);
    parts.details = el('dl', 'details');
    root.appendChild(parts.details);
    parts.actions = el('div', 'actions');
    parts.actions.hidden = true;
    parts.reason = el('input');
    parts.reason.placeholder = 'reason (required, recorded with the action)';
    parts.reason.setAttribute('aria-label', 'reason for ' + name);
    parts.actions.appendChild(parts.reason);
    parts.buttons = el('div', 'buttons');
    parts.actions.appendChild(parts.buttons);
    parts.result = el('p', 'result');
    parts.actions.appendChild(parts.result);
    root.appendChild(parts.actions);
    const tile = { name, parts, view: null, viewAt: 0, history: [], shownActions: '' };
    tiles.set(name, tile);
    placeTile(tile);
    return tile;
  }

  function placeTile(tile) {
    const container = $('tiles');
    const names = [...tiles.keys()].sort();
    const next = names[names.indexOf(tile.name) + 1];
    const before = next ? tiles.get(next).parts.root : null;
    container.insertBefore(tile.parts.root, before && before.parentNode === container ? before : null);
  }

  function tileFor(name) {
    return tiles.get(name) || makeTile(name);
  }

  function removeMissing(names) {
    for (const [name, tile] of tiles) {
      if (!names.has(name)) {
        tile.parts.root.remove();
        tiles.delete(name);
      }
    }
  }

  function configText(c) {
    if (!c) return '';
    const p = c.policy || {};
    const rule = {
      consecutive_failures: () => p.threshold + ' failures in a row',
      count_window: () => 'last ' + p.size + ' calls',
      time_window: () => 'last ' + duration(p.duration_ms) + ' (' + p.buckets + ' buckets)',
      cumulative: () => 'every call since closed',
    }[p.kind];
    const bits = [];
    if (rule) bits.push(rule());
    if (p.kind !== 'consecutive_failures') bits.push('min ' + c.minimum_calls + ' calls');
    if (c.slow_call_ms !== null) bits.push('slow ≥ ' + duration(c.slow_call_ms));
    bits.push('open ' + duration(c.open_ms) + (c.open_max_ms ? ' → ' + duration(c.open_max_ms) : ''));
    bits.push(c.half_open_probes + ' probe' + (c.half_open_probes === 1 ? '' : 's'));
    if (typeof c.enforcement === 'number' && c.enforcement < 100) bits.push('enforcing ' + c.enforcement + ' %');
    return bits.join(' · ');
  }

  function update(view, at) {
    const tile = tileFor(view.name);
    const p = tile.parts;
    const changed = tile.view && tile.view.state !== view.state;
    tile.view = view;
    tile.viewAt = at;
    p.root.dataset.state = view.state;
    p.root.dataset.mode = view.mode;
    p.badge.textContent = label(view.state);
    const c = view.config || {};
    const w = view.window;
    const policy = c.policy || {};
    if (policy.kind === 'consecutive_failures') {
      // No window: the rule counts failures in a row.
      p.failure.textContent = w.consecutive_failures + ' in a row / ' + policy.threshold;
      p.failure.classList.toggle('over', w.consecutive_failures >= policy.threshold);
    } else {
      p.failure.textContent = pct(w.failure_rate) + (c.failure_rate ? ' / ' + c.failure_rate + ' %' : '');
      p.failure.classList.toggle('over', !!(c.failure_rate && w.failure_rate >= c.failure_rate));
    }
    if (view.config && c.slow_call_ms === null) {
      p.slow.textContent = 'not measured';
      p.slow.classList.remove('over');
    } else {
      p.slow.textContent = pct(w.slow_call_rate) + (c.slow_call_rate ? ' / ' + c.slow_call_rate + ' %' : '');
      p.slow.classList.toggle('over', !!(c.slow_call_rate && w.slow_call_rate >= c.slow_call_rate));
    }
    p.calls.textContent = perSecond(view.rates && view.rates.calls_per_s);
    p.rejections.textContent = perSecond(view.rates && view.rates.rejections_per_s);
    const t = view.totals;
    p.totals.textContent = t.successes + ' ok · ' + t.failures + ' failed · ' + t.rejected + ' rejected' +
      (t.unenforced ? ' · ' + t.unenforced + ' let through (ramp)' : '');
    p.mode.textContent = view.mode === 'automatic' ? 'automatic (rules)' : label(view.mode) + ' (operator)';
    p.config.textContent = configText(view.config);
    p.details.replaceChildren();
    for (const [k, v] of view.details || []) {
      p.details.appendChild(el('dt', null, k));
      p.details.appendChild(el('dd', null, v));
    }
    drawThresholds(tile);
    tick(tile);
    if (changed) {
      p.root.classList.add('changed');
      setTimeout(() => p.root.classList.remove('changed'), 1200);
    }
    showActions(tile);
  }

  function addPoint(tile, point) {
    tile.history.push(point);
    const oldest = point[0] - historySpan;
    while (tile.history.length && tile.history[0][0] < oldest) tile.history.shift();
  }

  const y = (rate) => 58 - Math.max(0, Math.min(100, rate)) * 0.56;

  function drawThresholds(tile) {
    const c = (tile.view && tile.view.config) || {};
    const p = tile.parts;
    for (const [line, rate] of [[p.thresholdFailure, c.failure_rate], [p.thresholdSlow, c.slow_call_rate]]) {
      line.style.display = rate ? '' : 'none';
      if (rate) {
        line.setAttribute('y1', y(rate));
        line.setAttribute('y2', y(rate));
      }
    }
  }

  function draw(tile) {
    const now = serverNow();
    const x = (at) => 300 - ((now - at) / historySpan) * 300;
    // A line per stretch with a rate: no rate (open, half-open, an empty window) breaks it.
    const path = (i) => {
      let d = '';
      let drawing = false;
      for (const h of tile.history) {
        if (h[i] === null || h[i] === undefined) {
          drawing = false;
          continue;
        }
        d += (drawing ? ' L' : ' M') + x(h[0]).toFixed(1) + ',' + y(h[i]).toFixed(1);
        drawing = true;
      }
      return d.trim();
    };
    tile.parts.lineFailure.setAttribute('d', path(1));
    tile.parts.lineSlow.setAttribute('d', path(2));
    // The states over time, as coloured bands under the lines.
    const band = tile.parts.band;
    band.replaceChildren();
    for (let i = 0; i < tile.history.length; i++) {
      const h = tile.history[i];
      if (h[5] === 'closed') continue;
      const x0 = Math.max(0, x(h[0]));
      const x1 = i + 1 < tile.history.length ? x(tile.history[i + 1][0]) : 300;
      band.appendChild(svg('rect', {
        class: 'band', x: x0, y: 0, width: Math.max(0.5, x1 - x0), height: 60,
        fill: getComputedStyle(document.documentElement).getPropertyValue('--' + h[5]).trim() || '#888',
      }));
    }
    tile.parts.legendSpan.textContent = '  (last ' + duration(historySpan) + ')';
  }

  function tick(tile) {
    const v = tile.view;
    if (!v) return;
    const p = tile.parts;
    p.since.textContent = v.since ? (v.since_exact ? '' : '≥ ') + duration(serverNow() - v.since) : '–';
    if (v.state === 'open' && v.retry_after_ms !== null) {
      p.retry.textContent = duration(tile.viewAt + v.retry_after_ms - serverNow());
    } else {
      p.retry.textContent = v.state === 'forced_open' ? 'after a reset' : '–';
    }
  }

  function showActions(tile) {
    const p = tile.parts;
    const allowed = role === 'operator' && operatorActions;
    p.actions.hidden = !allowed;
    if (!allowed) return;
    const key = actions.join(',');
    if (tile.shownActions === key) return;
    tile.shownActions = key;
    p.buttons.replaceChildren();
    for (const action of actions) {
      const b = el('button', null, label(action));
      b.type = 'button';
      b.dataset.action = action;
      b.addEventListener('click', () => act(tile, action));
      p.buttons.appendChild(b);
    }
  }

  function encodeName(name) {
    return name.split('/').map(encodeURIComponent).join('/');
  }

  async function act(tile, action) {
    const p = tile.parts;
    const reason = p.reason.value.trim();
    p.result.classList.remove('error');
    if (!reason) {
      p.result.classList.add('error');
      p.result.textContent = 'Give a reason first: it is recorded with the action.';
      p.reason.focus();
      return;
    }
    p.result.textContent = label(action) + '…';
    try {
      const r = await fetch(api('breakers/' + encodeName(tile.name)), {
        method: 'POST',
        headers: authHeaders({ 'Content-Type': 'application/json' }),
        body: JSON.stringify({ action, reason }),
        cache: 'no-store',
      });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) {
        p.result.classList.add('error');
        p.result.textContent = (j.error || ('HTTP ' + r.status));
        return;
      }
      p.reason.value = '';
      p.result.textContent = label(action) + ': ' + label(j.from) + ' → ' + label(j.to);
      if (j.breaker) update(j.breaker, serverNow());
    } catch (e) {
      p.result.classList.add('error');
      p.result.textContent = 'request failed: ' + e.message;
    }
  }

  function summary() {
    const counts = {};
    for (const t of tiles.values()) {
      if (t.view) counts[t.view.state] = (counts[t.view.state] || 0) + 1;
    }
    const parts = [tiles.size + ' breaker' + (tiles.size === 1 ? '' : 's')];
    for (const state of ['open', 'half_open', 'forced_open', 'disabled', 'metrics_only']) {
      if (counts[state]) parts.push(counts[state] + ' ' + label(state));
    }
    $('summary').textContent = parts.join(' · ');
  }

  // ----- events ------------------------------------------------------------------------

  function point(view, at) {
    const r = view.rates || {};
    return [at, view.window.failure_rate, view.window.slow_call_rate,
      r.calls_per_s ?? null, r.rejections_per_s ?? null, view.state];
  }

  const handlers = {
    hello(msg) {
      operatorActions = msg.operator_actions;
      actions = msg.actions || actions;
      historySpan = (msg.history_step_ms || 5000) * 60;
      const names = new Set();
      for (const view of msg.breakers) {
        names.add(view.name);
        const tile = tileFor(view.name);
        tile.history = (view.history || []).slice();
        update(view, msg.at);
      }
      removeMissing(names);
    },
    snapshot(msg) {
      const names = new Set();
      for (const view of msg.breakers) {
        names.add(view.name);
        const tile = tileFor(view.name);
        update(view, msg.at);
        addPoint(tile, point(view, msg.at));
      }
      removeMissing(names);
    },
    transition(msg) {
      if (msg.view) update(msg.view, msg.at);
      const who = msg.breaker || msg.breaker_name || 'a breaker';
      log(who + ': ' + label(msg.from) + ' → ' + label(msg.to), msg.transition_at);
    },
    action(msg) {
      if (msg.view) update(msg.view, msg.at);
      const by = msg.by || {};
      log(msg.breaker + ': ' + label(msg.action) + ' by ' + (by.operator ? by.operator + ' with ' : '') +
        'token ' + (by.token || '?') + ' (' + label(msg.from) + ' → ' + label(msg.to) + '): ' + msg.reason, msg.at);
    },
    lost(msg) {
      log(msg.transitions + ' transitions were not streamed (queue full); the tiles show every state', msg.at);
    },
  };

  function dispatch(block) {
    let id = null;
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id') id = value;
      else if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (id !== null) lastEventId = id;
    if (!data.length || !handlers[type]) return;
    let msg;
    try {
      msg = JSON.parse(data.join('\n'));
    } catch (e) {
      return;
    }
    if (typeof msg.at === 'number') clockOffset = msg.at - Date.now();
    handlers[type](msg);
    summary();
  }

  async function read(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block);
      }
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function waitForToken() {
    return new Promise((resolve) => { tokenChanged = resolve; });
  }

  async function whoami() {
    try {
      const r = await fetch(api('whoami'), { headers: authHeaders(), cache: 'no-store' });
      const j = await r.json().catch(() => ({}));
      if (r.status === 401) {
        role = 'none';
        $('role').textContent = token ? 'this token is not valid' : 'a token is required to read';
        return;
      }
      role = j.role;
      operatorActions = j.operator_actions;
      actions = j.actions || actions;
      $('role').textContent = {
        operator: 'operator (' + j.token + ')',
        reader: 'reading (' + j.token + ')',
        anonymous: 'reading without a token',
      }[role] || role;
    } catch (e) {
      $('role').textContent = 'cannot reach the admin: ' + e.message;
    } finally {
      $('forget-token').hidden = !token;
      for (const tile of tiles.values()) showActions(tile);
    }
  }

  async function stream() {
    let backoff = 1000;
    for (;;) {
      controller = new AbortController();
      setStream(lastEventId ? 'reconnecting' : 'connecting');
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (lastEventId) headers['Last-Event-ID'] = lastEventId;
        const r = await fetch(api('events'), { headers, cache: 'no-store', signal: controller.signal });
        if (r.status === 401) {
          setStream('sign-in', 'token needed');
          notice('This admin needs a token to read: enter one above.');
          await waitForToken();
          continue;
        }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        setStream('live');
        notice('');
        backoff = 1000;
        await read(r.body);
      } catch (e) {
        if (controller.signal.aborted) continue; // a new token: reconnect at once
      }
      setStream('reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function useToken(value) {
    token = value;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    whoami();
    if (controller) controller.abort();
    if (tokenChanged) {
      tokenChanged();
      tokenChanged = null;
    }
  }

  $('signin').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('token');
    const value = input.value.trim();
    input.value = '';
    useToken(value);
  });
  $('forget-token').addEventListener('click', () => useToken(''));

  setInterval(() => {
    for (const tile of tiles.values()) {
      tick(tile);
      draw(tile);
    }
  }, 500);

  whoami();
  stream();
})();
