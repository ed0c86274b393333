// app.js - the operator's web page for torii's certificate store. It speaks the public admin
// API only (docs/api.md), with the admin token kept in sessionStorage and sent as a bearer
// header. Nothing is written into the page as HTML (textContent only), and no private key is
// ever put into the page: keys picked from files stay in variables, pasted keys are cleared
// once sent, and the keys returned by the PKI's generating routes are dropped unread.
'use strict';

(function () {
  const DAY = 86400000;
  const ALMOST_DAYS = 30;
  const WEEKS = 13; // the next 90 days, by week
  const TOKEN_KEY = 'torii.adminToken';
  const POLL_MAX = 600; // ACME job polls (one a second)
  const $ = (id) => document.getElementById(id);

  const BADGES = [
    { key: 'ca', label: 'CA', test: (e) => e.ca, q: () => [['filter.ca', 'true']] },
    { key: 'client', label: 'client', test: (e) => e.client, q: () => [['filter.client', 'true']] },
    { key: 'keypair', label: 'key pair', test: (e) => e.keypair, q: () => [['filter.keypair', 'true']] },
    { key: 'selfSigned', label: 'self-signed', test: (e) => e.selfSigned, q: () => [['filter.selfSigned', 'true']] },
    { key: 'letsEncrypt', label: "Let's Encrypt", test: (e) => e.letsEncrypt, q: () => [['filter.letsEncrypt', 'true']] },
    { key: 'autoRenew', label: 'auto-renew', test: (e) => e.autoRenew, q: () => [['filter.autoRenew', 'true']] },
    { key: 'exposed', label: 'exposed', test: (e) => e.exposed, q: () => [['filter.exposed', 'true']] },
    { key: 'revoked', label: 'revoked', test: (e) => e.revoked, q: () => [['filter.revoked', 'true']] },
    {
      key: 'expired', label: 'expired',
      test: (e, now) => !e.revoked && e.to < now,
      q: (now) => [['filter.revoked', 'false'], ['expiresBefore', String(now)]],
    },
    {
      key: 'almostExpired', label: 'almost expired',
      test: (e, now) => !e.revoked && e.to >= now && e.to < now + ALMOST_DAYS * DAY,
      q: (now) => [['filter.revoked', 'false'], ['expiresAfter', String(now)],
        ['expiresBefore', String(now + ALMOST_DAYS * DAY)]],
    },
  ];

  const COLUMNS = [
    { key: 'name', label: 'Name', sort: 'name' },
    { key: 'domain', label: 'Domain', sort: 'domain' },
    { key: 'sans', label: 'SANs', sort: 'sans' },
    { key: 'issuer', label: 'Issuer', sort: 'caRef' },
    { key: 'keyType', label: 'Key type', sort: 'keyType' },
    { key: 'validity', label: 'Validity', sort: 'to' },
    { key: 'badges', label: 'Badges', sort: 'badges' },
  ];

  const LIST_FIELDS = 'id,name,domain,sans,caRef,chain,from,to,ca,client,keypair,selfSigned,'
    + 'letsEncrypt,autoRenew,exposed,revoked,valid';

  const OVERVIEW_FIELDS = 'to,revoked,valid,ca,client,keypair,selfSigned,letsEncrypt,autoRenew,exposed';

  const list = { page: 1, size: 50, sort: 'to', asc: true, search: '', badge: '', window: null };
  let current = null; // the entity of the details view (redacted)
  let listRenders = 0;

  // ---- admin API ----

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  function explain(status, why) {
    const text = String(why).replace(/\.$/, '');
    switch (status) {
      case 401: return 'The admin token was refused (' + text + '). Check it and sign in again.';
      case 403: return 'Not allowed: ' + text + '.';
      case 404: return 'Not found: ' + text + '.';
      case 409: return 'Conflict: ' + text + '.';
      case 429: return 'Too many failed sign-ins from this address: ' + text + '.';
      default: return 'The server refused it (' + status + '): ' + text + '.';
    }
  }

  async function api(method, path, opts) {
    const o = opts || {};
    const headers = { Authorization: 'Bearer ' + token() };
    let body;
    if (o.json !== undefined) {
      headers['Content-Type'] = o.type || 'application/json';
      body = JSON.stringify(o.json);
    } else if (o.raw !== undefined) {
      headers['Content-Type'] = o.type;
      body = o.raw;
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      throw new Error('The admin API cannot be reached (' + e.message + ').');
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const err = new Error(explain(res.status, data && data.error ? data.error : text || res.statusText));
      err.status = res.status;
      throw err;
    }
    return { data, headers: res.headers, status: res.status };
  }

  function query(pairs) {
    const p = new URLSearchParams();
    pairs.forEach(([k, v]) => p.append(k, v));
    return p.toString();
  }

  // ---- small DOM helpers ----

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, String(v)));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function say(id, text) {
    $(id).textContent = text || '';
  }

  function certLink(id) {
    return el('a', { href: '#cert/' + encodeURIComponent(id) }, id);
  }

  function done(id, text, ids) {
    const p = $(id);
    p.textContent = text;
    (ids || []).forEach((c, i) => {
      p.append(i === 0 ? ' ' : ', ', certLink(c));
    });
  }

  function splitList(s) {
    return s.split(/[\s,]+/).map((x) => x.trim()).filter((x) => x.length > 0);
  }

  function day(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  // Run fn for a form, errors shown next to it (errId), the submit button disabled meanwhile.
  function guarded(form, errId, fn) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = form.querySelector('button[type=submit]');
      say(errId, '');
      if (btn) btn.disabled = true;
      try {
        await fn();
      } catch (e) {
        say(errId, e.message);
      } finally {
        if (btn) btn.disabled = false;
      }
    });
  }

  // ---- certificates decoded in the page (public parts only: issuer, subject, key type) ----

  function pemBlocks(text) {
    return String(text || '').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) || [];
  }

  function pemToDer(pem) {
    const bin = atob(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''));
    const u = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return u;
  }

  function derRead(buf, pos) {
    if (pos + 2 > buf.length) throw new Error('truncated DER');
    let len = buf[pos + 1];
    let p = pos + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n > 4) throw new Error('DER length too long');
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    }
    if (p + len > buf.length) throw new Error('truncated DER');
    return { tag: buf[pos], start: p, len, end: p + len };
  }

  function derChildren(buf, node) {
    const out = [];
    for (let p = node.start; p < node.end && out.length < 256;) {
      const c = derRead(buf, p);
      out.push(c);
      p = c.end;
    }
    return out;
  }

  function oidText(buf, node) {
    const b = buf.subarray(node.start, node.end);
    const parts = [Math.floor(b[0] / 40), b[0] % 40];
    let v = 0;
    for (let i = 1; i < b.length; i++) {
      v = v * 128 + (b[i] & 0x7f);
      if (!(b[i] & 0x80)) {
        parts.push(v);
        v = 0;
      }
    }
    return parts.join('.');
  }

  const DN_NAMES = { '2.5.4.3': 'CN', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST' };
  const CURVES = { '1.2.840.10045.3.1.7': 'P-256', '1.3.132.0.34': 'P-384', '1.3.132.0.35': 'P-521' };

  function dnText(buf, node) {
    return derChildren(buf, node).map((set) => {
      const atv = derChildren(buf, derChildren(buf, set)[0]);
      const oid = oidText(buf, atv[0]);
      return (DN_NAMES[oid] || oid) + '=' + new TextDecoder().decode(buf.subarray(atv[1].start, atv[1].end));
    }).join(', ');
  }

  function keyType(buf, spkiNode) {
    const spki = derChildren(buf, spkiNode);
    const alg = derChildren(buf, spki[0]);
    const oid = oidText(buf, alg[0]);
    if (oid === '1.2.840.113549.1.1.1') {
      const mod = derChildren(buf, derRead(buf, spki[1].start + 1))[0];
      return 'RSA ' + (mod.len - (buf[mod.start] === 0 ? 1 : 0)) * 8;
    }
    if (oid === '1.2.840.10045.2.1') {
      const curve = oidText(buf, alg[1]);
      return 'EC ' + (CURVES[curve] || curve);
    }
    return oid === '1.3.101.112' ? 'Ed25519' : oid;
  }

  function certInfo(pem) {
    try {
      const buf = pemToDer(pem);
      let f = derChildren(buf, derChildren(buf, derRead(buf, 0))[0]);
      if (f[0].tag === 0xa0) f = f.slice(1); // version
      return { issuer: dnText(buf, f[2]), subject: dnText(buf, f[4]), keyType: keyType(buf, f[5]) };
    } catch (e) {
      return { issuer: '(unreadable)', subject: '(unreadable)', keyType: '(unreadable)' };
    }
  }

  // ---- badges ----

  function badgeList(e, now) {
    return BADGES.filter((b) => b.test(e, now));
  }

  function badgeNodes(e, now) {
    const box = el('span', { class: 'badges' });
    badgeList(e, now).forEach((b) => box.append(el('span', { class: 'badge badge-' + b.key }, b.label)));
    return box;
  }

  // ---- sign in / out ----

  async function signIn(tok) {
    sessionStorage.setItem(TOKEN_KEY, tok);
    try {
      await api('GET', '/metrics'); // cheap, needs the read scope like the page does
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw e;
    }
    $('signin-token').value = '';
    location.hash = '#overview';
    render();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    current = null;
    location.hash = '';
    render();
  }

  // ---- overview ----

  function weekBars(now) {
    const bars = [{ label: 'expired', title: 'Expired (not revoked)', window: { before: now, revoked: false } }];
    for (let w = 0; w < WEEKS; w++) {
      const a = now + w * 7 * DAY;
      const b = a + 7 * DAY;
      bars.push({ label: day(a).slice(5), title: 'Expiring ' + day(a) + ' to ' + day(b), window: { after: a, before: b, revoked: false } });
    }
    bars.push({ label: 'revoked', title: 'Revoked', window: { revoked: true } });
    return bars;
  }

  function windowPairs(w) {
    const p = [['filter.revoked', w.revoked ? 'true' : 'false']];
    if (w.after !== undefined) p.push(['expiresAfter', String(w.after)]);
    if (w.before !== undefined) p.push(['expiresBefore', String(w.before)]);
    return p;
  }

  function drawPlot(bars) {
    const W = 48;
    const H = 160;
    const max = Math.max(1, ...bars.map((b) => b.count));
    const root = svg('svg', { viewBox: '0 0 ' + bars.length * W + ' ' + (H + 60), role: 'group', class: 'chart' });
    bars.forEach((b, i) => {
      const h = Math.round((b.count / max) * H);
      const g = svg('g', {
        class: 'bar bar-' + (b.label === 'expired' || b.label === 'revoked' ? b.label : 'week'),
        tabindex: 0, role: 'button', 'data-label': b.label, 'data-count': b.count,
        'aria-label': b.title + ': ' + b.count + ' certificate(s); show them',
      });
      g.append(svg('title', {}, b.title + ': ' + b.count));
      g.append(svg('rect', { x: i * W + 6, y: 20 + H - h, width: W - 12, height: Math.max(h, 1) }));
      g.append(svg('text', { x: i * W + W / 2, y: 14 + H - h, 'text-anchor': 'middle', class: 'count' }, b.count));
      g.append(svg('text', { x: i * W + W / 2, y: H + 40, 'text-anchor': 'middle', class: 'label' }, b.label));
      const open = () => {
        list.window = Object.assign({ title: b.title }, b.window);
        list.badge = ''; // a badge filter would repeat filter.revoked
        $('list-badge').value = '';
        list.page = 1;
        location.hash = '#list';
      };
      g.addEventListener('click', open);
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          open();
        }
      });
      root.append(g);
    });
    $('plot').replaceChildren(root);
  }

  function inWindow(e, w) {
    return !!e.revoked === !!w.revoked && (w.after === undefined || e.to >= w.after)
      && (w.before === undefined || e.to < w.before);
  }

  // One request for the whole store (ten small fields a certificate), counted here: with
  // 10,000 certificates that is one scan of the store instead of one per count and bar.
  async function renderOverview() {
    const now = Date.now();
    say('overview-error', '');
    const states = [
      { label: 'all', test: () => true },
      { label: 'valid', test: (e) => e.valid },
    ].concat(BADGES.map((b) => ({ label: b.label, test: (e) => b.test(e, now) })));
    const bars = weekBars(now);
    try {
      const all = (await api('GET', '/api/certificates?fields=' + OVERVIEW_FIELDS)).data;
      const dl = $('counts');
      dl.replaceChildren();
      states.forEach((s) => {
        const d = el('div', { class: 'count-item', 'data-state': s.label });
        d.append(el('dt', {}, s.label), el('dd', {}, all.filter(s.test).length));
        dl.append(d);
      });
      bars.forEach((b) => { b.count = all.filter((e) => inWindow(e, b.window)).length; });
      drawPlot(bars);
    } catch (e) {
      say('overview-error', e.message);
    }
  }

  // ---- list ----

  function renderHead() {
    const tr = $('list-head');
    tr.replaceChildren();
    COLUMNS.forEach((c) => {
      const th = el('th', { scope: 'col' });
      if (!c.sort) {
        th.textContent = c.label;
      } else {
        const on = list.sort === c.sort;
        th.setAttribute('aria-sort', on ? (list.asc ? 'ascending' : 'descending') : 'none');
        const b = el('button', { type: 'button', class: 'sort', 'data-sort': c.sort }, c.label + (on ? (list.asc ? ' ▲' : ' ▼') : ''));
        b.addEventListener('click', () => {
          list.asc = on ? !list.asc : true;
          list.sort = c.sort;
          list.page = 1;
          renderList();
        });
        th.append(b);
      }
      tr.append(th);
    });
  }

  function listPairs(now) {
    const p = [['page', String(list.page)], ['pageSize', String(list.size)],
      ['sorted', list.sort + ':' + list.asc + ',name:true'], ['fields', LIST_FIELDS]];
    if (list.search) p.push(['search', list.search]);
    const badge = BADGES.find((b) => b.key === list.badge);
    if (badge) badge.q(now).forEach((x) => p.push(x));
    if (list.window) windowPairs(list.window).forEach((x) => p.push(x));
    return p;
  }

  function validityCell(e, now) {
    const left = Math.floor((e.to - now) / DAY);
    const ago = Math.floor((now - e.to) / DAY);
    const td = el('td', { class: 'validity' });
    td.append(el('span', {}, day(e.from) + ' → ' + day(e.to)), el('br'),
      el('span', { class: e.to < now ? 'days expired' : left < ALMOST_DAYS ? 'days soon' : 'days' },
        e.to < now ? 'expired ' + ago + ' day(s) ago' : left + ' days left'));
    return td;
  }

  function row(e, now) {
    const info = certInfo(pemBlocks(e.chain)[0] || '');
    const tr = el('tr', { 'data-id': e.id });
    const name = el('td');
    name.append(certLink(e.id));
    if (e.name && e.name !== e.id) name.append(el('br'), el('span', { class: 'sub' }, e.name));
    const issuer = el('td', {}, info.issuer);
    if (e.caRef) issuer.append(el('br'), el('span', { class: 'sub' }, e.caRef));
    const badges = el('td');
    badges.append(badgeNodes(e, now));
    tr.append(name, el('td', {}, e.domain), el('td', { class: 'sans' }, (e.sans || []).join(', ')),
      issuer, el('td', {}, info.keyType), validityCell(e, now), badges);
    return tr;
  }

  async function renderList() {
    const now = Date.now();
    renderHead();
    say('list-error', '');
    say('list-window', list.window ? 'Showing: ' + list.window.title + ' (from the overview)' : '');
    try {
      const r = await api('GET', '/api/certificates?' + query(listPairs(now)));
      const n = Number(r.headers.get('X-Filtered-Count'));
      const pages = Math.max(1, Math.ceil(n / list.size));
      $('list-body').replaceChildren(...r.data.map((e) => row(e, now)));
      say('list-status', n + ' certificate(s), page ' + list.page + ' of ' + pages);
      $('list-prev').disabled = list.page <= 1;
      $('list-next').disabled = list.page >= pages;
    } catch (e) {
      say('list-error', e.message);
    }
    listRenders++;
    document.body.dataset.listRendered = String(listRenders); // tests wait on it
  }

  function setupList() {
    const sel = $('list-badge');
    sel.append(el('option', { value: '' }, 'any'));
    BADGES.forEach((b) => sel.append(el('option', { value: b.key }, b.label)));
    $('list-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      list.search = $('list-search').value.trim();
      list.badge = sel.value;
      if (list.badge) list.window = null; // one of the two
      list.size = Number($('list-size').value);
      list.page = 1;
      renderList();
    });
    $('list-clear').addEventListener('click', () => {
      $('list-search').value = '';
      sel.value = '';
      Object.assign(list, { search: '', badge: '', window: null, page: 1, sort: 'to', asc: true });
      renderList();
    });
    $('list-prev').addEventListener('click', () => { list.page--; renderList(); });
    $('list-next').addEventListener('click', () => { list.page++; renderList(); });
  }

  // ---- actions: add item, Let's Encrypt, create, import .p12 ----

  let pickedKey = null; // a key read from a file: never put into the page

  function setupAdd() {
    $('add-chain-file').addEventListener('change', async (ev) => {
      const f = ev.target.files[0];
      if (f) $('add-chain').value = await f.text();
    });
    $('add-key-file').addEventListener('change', async (ev) => {
      const f = ev.target.files[0];
      pickedKey = f ? await f.text() : null;
    });
    guarded($('add-form'), 'add-error', async () => {
      say('add-done', '');
      const body = { chain: $('add-chain').value.trim(), privateKey: pickedKey || $('add-key').value.trim() };
      if ($('add-name').value.trim()) body.name = $('add-name').value.trim();
      if ($('add-password').value) body.password = $('add-password').value;
      const r = await api('POST', '/api/certificates', { json: body });
      $('add-form').reset();
      pickedKey = null;
      done('add-done', 'Added', [r.data.id]);
    });
  }

  function sleep(ms) {
    return new Promise((res) => setTimeout(res, ms));
  }

  async function pollJob(id) {
    for (let i = 0; i < POLL_MAX; i++) {
      const j = (await api('GET', '/api/pki/acme/jobs/' + encodeURIComponent(id))).data || {};
      const st = String(j.state || j.status || 'pending');
      say('le-done', 'Order ' + id + ': ' + st);
      if (j.error) throw new Error('The ACME order failed: ' + (j.error.detail || j.error.message || JSON.stringify(j.error)));
      if (/^(done|valid|finished|succeeded|success|issued)$/i.test(st)) return j;
      if (/^(failed|invalid|error)$/i.test(st)) throw new Error('The ACME order failed (' + st + ').');
      await sleep(1000);
    }
    throw new Error('The ACME order ' + id + ' is still running; look at it later in the list.');
  }

  function setupLetsEncrypt() {
    guarded($('le-form'), 'le-error', async () => {
      say('le-done', '');
      let r;
      try {
        r = await api('POST', '/api/pki/certs/_letsencrypt?async=true', { json: { hosts: splitList($('le-hosts').value) } });
      } catch (e) {
        if (e.status === 404) throw new Error('This torii has no ACME support configured (the API answered 404).');
        throw e;
      }
      const d = r.data || {};
      const jobId = d.jobId || d.job || d.id;
      const j = r.status === 202 ? await pollJob(jobId) : d;
      const cid = j.certId || (j.result && (j.result.certId || j.result.id)) || j.id;
      done('le-done', 'Certificate issued:', cid ? [cid] : []);
    });
  }

  function keySizes() {
    const rsa = $('create-keytype').value === 'rsa';
    const sizes = rsa ? ['2048', '3072', '4096'] : ['256', '384', '521'];
    $('create-keysize').replaceChildren(...sizes.map((s) => el('option', { value: s }, s)));
  }

  async function loadIssuers() {
    const sel = $('create-issuer');
    const r = await api('GET', '/api/certificates?' + query([['filter.ca', 'true'], ['filter.revoked', 'false'], ['fields', 'id,name'], ['sorted', 'name:true']]));
    sel.replaceChildren(el('option', { value: '' }, 'none (self-signed)'),
      ...r.data.map((c) => el('option', { value: c.id }, c.name + ' (' + c.id + ')')));
    const inter = r.data.find((c) => c.id === 'torii-intermediate-ca');
    if (inter) sel.value = inter.id;
  }

  function createRequest() {
    const issuer = $('create-issuer').value;
    const ca = $('create-ca').checked;
    const enc = encodeURIComponent(issuer);
    const path = issuer ? '/api/pki/cas/' + enc + (ca ? '/cas' : '/certs') : ca ? '/api/pki/cas' : '/api/pki/certs';
    const body = {
      hosts: splitList($('create-hosts').value),
      key: { algo: $('create-keytype').value, size: Number($('create-keysize').value) },
      subject: $('create-subject').value.trim(),
      client: $('create-client').checked,
      ca,
      includeAIA: $('create-aia').checked,
      duration: Number($('create-days').value) * DAY,
      signatureAlg: $('create-sigalg').value,
      digestAlg: $('create-digest').value,
    };
    return { path, body };
  }

  function setupCreate() {
    $('create-keytype').addEventListener('change', keySizes);
    keySizes();
    guarded($('create-form'), 'create-error', async () => {
      say('create-done', '');
      const req = createRequest();
      const r = await api('POST', req.path, { json: req.body });
      const id = r.data.certId || r.data.id; // the fresh private key in r.data is not kept
      r.data = null;
      done('create-done', 'Created', [id]);
    });
  }

  function setupP12() {
    guarded($('p12-form'), 'p12-error', async () => {
      say('p12-done', '');
      const f = $('p12-file').files[0];
      if (!f) throw new Error('Pick a .p12 file first.');
      const pw = encodeURIComponent($('p12-password').value);
      const r = await api('POST', '/api/pki/certs/_p12?password=' + pw, { raw: await f.arrayBuffer(), type: 'application/x-pkcs12' });
      $('p12-form').reset();
      done('p12-done', 'Imported', r.data.certIds || []);
    });
  }

  // ---- one certificate: details, edit, renew, revoke, delete ----

  function field(dl, k, v) {
    const d = el('div', { class: 'field', 'data-field': k });
    d.append(el('dt', {}, k), el('dd', {}, v));
    dl.append(d);
  }

  async function renderDecoded(e) {
    const dl = $('cert-fields');
    const leaf = pemBlocks(e.chain)[0];
    if (!leaf) return;
    try {
      const r = await api('POST', '/api/pki/certs/_data', { raw: leaf, type: 'application/x-pem-file' });
      Object.entries(r.data || {}).forEach(([k, v]) => {
        if (typeof v !== 'object' || v === null) field(dl, k, v);
        else field(dl, k, JSON.stringify(v));
      });
    } catch (err) {
      say('cert-error', 'The leaf could not be decoded: ' + err.message);
    }
  }

  function fillEdit(e) {
    $('edit-name').value = e.name || '';
    $('edit-description').value = e.description || '';
    $('edit-tags').value = (e.tags || []).join(', ');
    $('edit-metadata').value = Object.entries(e.metadata || {}).map(([k, v]) => k + '=' + v).join('\n');
    ['autoRenew', 'exposed', 'client', 'keypair'].forEach((k) => { $('edit-' + k).checked = !!e[k]; });
  }

  async function renderCert(id) {
    say('cert-error', '');
    $('delete-confirm-box').hidden = true;
    const now = Date.now();
    let e;
    try {
      e = (await api('GET', '/api/certificates/' + encodeURIComponent(id))).data;
    } catch (err) {
      say('cert-error', err.message);
      return;
    }
    current = e;
    say('cert-title', 'Certificate ' + e.id);
    $('cert-badges').replaceChildren(badgeNodes(e, now));
    const dl = $('cert-fields');
    dl.replaceChildren();
    ['id', 'name', 'description', 'domain', 'subject', 'certType', 'caRef', 'valid'].forEach((k) => field(dl, k, e[k]));
    field(dl, 'sans', (e.sans || []).join(', '));
    field(dl, 'validity', day(e.from) + ' → ' + day(e.to) + ' (' + Math.floor((e.to - now) / DAY) + ' days left)');
    $('cert-chain').replaceChildren(...pemBlocks(e.chain).map((p) => {
      const i = certInfo(p);
      return el('li', {}, i.subject + ' — issued by ' + i.issuer + ' — ' + i.keyType);
    }));
    fillEdit(e);
    await renderDecoded(e);
  }

  function metadataPatch(old, text) {
    const next = {};
    text.split('\n').map((l) => l.trim()).filter((l) => l).forEach((l) => {
      const at = l.indexOf('=');
      if (at <= 0) throw new Error('Metadata line "' + l + '" is not key=value.');
      next[l.slice(0, at).trim()] = l.slice(at + 1).trim();
    });
    Object.keys(old || {}).forEach((k) => { if (!(k in next)) next[k] = null; });
    return next;
  }

  async function patch(body) {
    await api('PATCH', '/api/certificates/' + encodeURIComponent(current.id), { json: body, type: 'application/merge-patch+json' });
  }

  function setupCert() {
    guarded($('edit-form'), 'edit-error', async () => {
      const body = {
        name: $('edit-name').value, description: $('edit-description').value,
        tags: splitList($('edit-tags').value.replace(/\s+/g, ' ')).filter((t) => t),
        metadata: metadataPatch(current.metadata, $('edit-metadata').value),
      };
      ['autoRenew', 'exposed', 'client', 'keypair'].forEach((k) => { body[k] = $('edit-' + k).checked; });
      await patch(body);
      say('cert-done', 'Saved.');
      await renderCert(current.id);
    });
    guarded($('revoke-form'), 'revoke-error', async () => {
      await patch({ revoked: true, metadata: { revocationReason: $('revoke-reason').value, revokedAt: String(Date.now()) } });
      say('cert-done', 'Revoked.');
      await renderCert(current.id);
    });
    $('cert-renew').addEventListener('click', async () => {
      say('cert-error', '');
      try {
        await api('POST', '/api/certificates/' + encodeURIComponent(current.id) + '/_renew');
        say('cert-done', 'Renewed.');
        await renderCert(current.id);
      } catch (e) {
        say('cert-error', e.message);
      }
    });
    $('cert-download').addEventListener('click', () => {
      const a = el('a', { download: current.id + '.chain.pem' });
      a.href = URL.createObjectURL(new Blob([pemBlocks(current.chain).join('\n') + '\n'], { type: 'application/x-pem-file' }));
      document.body.append(a);
      a.click();
      a.remove();
    });
    guarded($('delete-form'), 'delete-error', async () => {
      $('delete-confirm-box').hidden = false;
      $('delete-confirm').focus();
    });
    $('delete-cancel').addEventListener('click', () => { $('delete-confirm-box').hidden = true; });
    $('delete-confirm').addEventListener('click', async () => {
      try {
        await api('DELETE', '/api/certificates/' + encodeURIComponent(current.id));
        $('delete-confirm-box').hidden = true;
        location.hash = '#list';
      } catch (e) {
        say('delete-error', e.message);
      }
    });
  }

  // ---- routing ----

  function show(viewId) {
    document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== viewId; });
  }

  function render() {
    const signed = token() !== '';
    $('nav').hidden = !signed;
    if (!signed) {
      show('signin-view');
      return;
    }
    const h = location.hash.replace(/^#/, '') || 'overview';
    say('cert-done', '');
    if (h.startsWith('cert/')) {
      show('cert-view');
      renderCert(decodeURIComponent(h.slice(5)));
    } else if (h === 'list') {
      show('list-view');
      renderList();
    } else if (h === 'create') {
      show('create-view');
      loadIssuers().catch((e) => say('create-error', e.message));
    } else if (['add', 'letsencrypt', 'p12'].includes(h)) {
      show(h + '-view');
    } else {
      show('overview-view');
      renderOverview();
    }
  }

  function setup() {
    guarded($('signin-form'), 'signin-error', () => signIn($('signin-token').value.trim()));
    $('signout').addEventListener('click', signOut);
    setupList();
    setupAdd();
    setupLetsEncrypt();
    setupCreate();
    setupP12();
    setupCert();
    window.addEventListener('hashchange', render);
    render();
  }

  document.addEventListener('DOMContentLoaded', setup);
})();
