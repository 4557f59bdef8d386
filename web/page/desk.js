/* desk.js - the desk's page. Every text that came from a record is put in
 * the page with textContent or as an attribute value set through the DOM,
 * never parsed as HTML: a testimony is untrusted input. */
'use strict';

const S = { csrf: '', device: '', names: {}, locked: false, query: new URLSearchParams('limit=50') };
const STATES = ['new', 'reviewed', 'needs-follow-up', 'archived'];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') { for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn); }
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function status(msg, bad) {
  const s = document.getElementById('status');
  s.textContent = msg || '';
  s.className = bad ? 'error' : '';
}

async function api(path, params) {
  const r = await fetch(path + (params ? '?' + params : ''), { credentials: 'same-origin', cache: 'no-store' });
  const j = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (r.status === 423) unlockView();
  if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
  return j;
}

async function post(path, fields) {
  const body = new URLSearchParams(fields);
  const r = await fetch(path, {
    method: 'POST', credentials: 'same-origin', cache: 'no-store', body,
    headers: { 'X-CSRF-Token': S.csrf, 'Content-Type': 'application/x-www-form-urlencoded' }
  });
  const j = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (r.status === 423) unlockView();
  if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status));
  return j;
}

/* The vault was locked after being idle: its passphrase opens it again
 * (a wrong one counts toward the vault's wipe-after setting, as at the
 * command line). The field is emptied as soon as the request is sent. */
function unlockView() {
  if (S.locked) return;
  const pass = el('input', { type: 'password', id: 'unlock-pass', autocomplete: 'off', required: true });
  const msg = el('p', { role: 'alert' });
  const form = el('form', { id: 'unlock', on: { submit: async ev => {
    ev.preventDefault();
    const p = pass.value;
    pass.value = '';
    try {
      await post('/api/unlock', { passphrase: p });
      S.locked = false;
      status('Unlocked');
      route();
    } catch (e) {
      msg.className = 'error';
      msg.textContent = e.message;
      pass.focus();
    }
  } } },
    el('label', { for: 'unlock-pass', text: 'Passphrase ' }), pass, ' ',
    el('button', { type: 'submit', text: 'Unlock' }));
  main().replaceChildren(el('h2', { text: 'The vault is locked' }),
       el('p', { text: 'It was locked after being idle. Enter its passphrase to open it again.' }),
       form, msg);
  S.locked = true;
  pass.focus();
}

function who(id) {
  if (!id) return 'unknown device';
  const n = S.names[id];
  return n ? n : id.slice(0, 16) + '…';
}

function whoEl(id) {
  return el('span', { title: id || '' , text: who(id) });
}

function day(t) { return t ? t.replace('T', ' ').replace(/:\d\dZ$/, '') : ''; }

function main() { return document.getElementById('main'); }

function show(...nodes) {
  if (S.locked) return; /* the unlock form stays until the vault opens */
  const m = main();
  m.replaceChildren(...nodes);
}

/* ---- the list ---------------------------------------------------------- */

async function listView(params) {
  if (params) S.query = params;
  const q = S.query;
  let facets = { tags: [], authors: [] };
  try { facets = await api('/api/facets'); } catch (e) { status(e.message, true); }
  const opt = (v, label, cur) => el('option', { value: v, selected: v === cur }, label);
  const form = el('form', { class: 'filters', role: 'search', on: { submit: ev => {
      ev.preventDefault();
      const p = new URLSearchParams(new FormData(form));
      for (const [k, v] of [...p]) if (!v) p.delete(k);
      p.set('limit', '50');
      location.hash = '#/?' + p.toString();
    } } },
    el('label', {}, 'Search', el('input', { type: 'search', name: 'q', id: 'q', value: q.get('q') || '',
      placeholder: 'words in any text (press / to focus)' })),
    el('label', {}, 'State', el('select', { name: 'state' }, opt('', 'any', q.get('state') || ''),
      STATES.map(s => opt(s, s, q.get('state'))))),
    el('label', {}, 'Tag', el('select', { name: 'tag' }, opt('', 'any', q.get('tag') || ''),
      facets.tags.map(t => opt(t, t, q.get('tag'))))),
    el('label', {}, 'Author', el('select', { name: 'device' }, opt('', 'any', q.get('device') || ''),
      facets.authors.map(a => opt(a.id, a.name || a.id.slice(0, 16) + '…', q.get('device'))))),
    el('label', {}, 'Created from', el('input', { type: 'date', name: 'since', value: q.get('since') || '' })),
    el('label', {}, 'to', el('input', { type: 'date', name: 'until', value: q.get('until') || '' })),
    el('label', {}, 'Sort', el('select', { name: 'sort' },
      ['created', 'modified', 'title', 'state'].map(s => opt(s, s, q.get('sort') || 'created')))),
    el('label', {}, 'Order', el('select', { name: 'order' },
      opt('desc', 'newest / Z first', q.get('order') || 'desc'), opt('asc', 'oldest / A first', q.get('order')))),
    el('button', { type: 'submit', class: 'primary' }, 'Apply'),
    el('button', { type: 'button', on: { click: () => { location.hash = '#/'; } } }, 'Clear'));
  const table = el('table', { id: 'records' },
    el('thead', {}, el('tr', {}, ['State', 'Title', 'Author', 'Created', 'Modified', 'Tags', 'Marks']
      .map(h => el('th', { scope: 'col' }, h)))));
  const tbody = el('tbody');
  table.append(tbody);
  const info = el('span', { id: 'count' });
  const prev = el('button', { type: 'button' }, '← Previous');
  const next = el('button', { type: 'button' }, 'Next →');
  show(el('h2', {}, 'Records'), form, table, el('div', { class: 'pager' }, prev, info, next));
  status('loading…');
  let j;
  const t0 = performance.now();
  try { j = await api('/api/records', q.toString()); } catch (e) { status(e.message, true); return; }
  status('');
  const off = j.offset, lim = j.limit;
  info.textContent = j.total ? `${off + 1}–${Math.min(off + lim, j.total)} of ${j.total}` +
    (j.total !== j.all ? ` (filtered from ${j.all})` : '') : 'no records';
  info.title = `${Math.round(performance.now() - t0)} ms`;
  prev.disabled = off === 0;
  next.disabled = off + lim >= j.total;
  const page = o => { const p = new URLSearchParams(q); p.set('offset', String(Math.max(0, o))); location.hash = '#/?' + p; };
  prev.addEventListener('click', () => page(off - lim));
  next.addEventListener('click', () => page(off + lim));
  for (const r of j.records) {
    if (!r.readable) {
      tbody.append(el('tr', {}, el('td', {}, el('span', { class: 'mark unreadable' }, 'unreadable')),
        el('td', { colspan: 6 }, el('span', { class: 'id', text: r.id }), ' ', r.why)));
      continue;
    }
    const marks = el('td');
    if (r.attachments) marks.append(el('span', { class: 'mark', title: 'attachments' }, `${r.attachments} att.`));
    if (r.notes) marks.append(el('span', { class: 'mark', title: 'notes' }, `${r.notes} note${r.notes === 1 ? '' : 's'}`));
    if (r.conflict) marks.append(el('span', { class: 'mark conflict' }, 'conflict'));
    if (!r.complete) marks.append(el('span', { class: 'mark incomplete' }, 'incomplete'));
    tbody.append(el('tr', {},
      el('td', {}, el('span', { class: 'state state-' + r.state, text: r.state })),
      el('td', {}, el('a', { href: '#/r/' + r.id, text: r.title || '(untitled)' })),
      el('td', { title: r.author || '', text: r.author_name || (r.author ? r.author.slice(0, 16) + '…' : 'unknown') }),
      el('td', { text: day(r.created) }),
      el('td', { text: day(r.modified) }),
      el('td', {}, r.tags.map(t => el('span', { class: 'tag', text: t }))),
      marks));
  }
}

/* ---- a record ------------------------------------------------------------ */

function attachmentView(id, a) {
  const src = '/api/attachment?' + new URLSearchParams({ id, name: a.name });
  const ext = (a.name.split('.').pop() || '').toLowerCase();
  const whole = a.chunks_present >= a.chunks;
  const cap = el('figcaption', {}, el('span', { text: a.name }), ` (${a.size} bytes)`,
    whole ? null : el('span', { class: 'mark incomplete' }, `incomplete: ${a.chunks_present} of ${a.chunks} chunks`));
  let media = null;
  if (whole) {
    if (['mp3', 'm4a', 'aac', 'ogg', 'oga', 'opus', 'wav', 'flac', 'weba'].includes(ext))
      media = el('audio', { controls: true, preload: 'metadata', src });
    else if (['mp4', 'm4v', 'webm', 'ogv', 'mov'].includes(ext))
      media = el('video', { controls: true, preload: 'metadata', src });
    else if (['jpg', 'jpeg', 'png', 'gif', 'webp'].includes(ext))
      media = el('img', { src, alt: a.name });
  }
  const dl = whole ? el('a', { href: src, download: a.name, class: 'noprint' }, 'download') : null;
  return el('figure', {}, media, cap, ' ', dl);
}

function recordBody(r) {
  const fields = el('dl', { class: 'meta' });
  for (const [k, v] of Object.entries(r.fields)) fields.append(el('dt', { text: k }), el('dd', { text: v }));
  return [
    r.narrative ? el('div', { class: 'narrative', text: r.narrative }) : null,
    Object.keys(r.fields).length ? fields : null,
    r.tags.length ? el('p', {}, r.tags.map(t => el('span', { class: 'tag', text: t }))) : null,
  ];
}

async function recordView(id) {
  status('loading…');
  let r;
  try { r = await api('/api/record', new URLSearchParams({ id })); } catch (e) { status(e.message, true); show(el('p', { class: 'error', text: e.message })); return; }
  status('');
  Object.assign(S.names, r.names);
  const stateSel = el('select', { id: 'state', 'aria-label': 'Review state' }, STATES.map(s => el('option', { value: s, selected: s === r.state }, s)));
  const stateBtn = el('button', { type: 'button', on: { click: async () => {
    try { await post('/api/state', { id: r.id, state: stateSel.value }); status('state set'); recordView(r.id); }
    catch (e) { status(e.message, true); } } } }, 'Set state');

  const meta = el('dl', { class: 'meta' },
    el('dt', {}, 'Record'), el('dd', { class: 'id', text: r.id }),
    el('dt', {}, 'Author'), el('dd', {}, whoEl(r.author)),
    el('dt', {}, 'Created'), el('dd', { text: day(r.created) + ' UTC' }),
    el('dt', {}, 'Modified'), el('dd', { text: day(r.modified) + ' UTC' }),
    el('dt', {}, 'Review state'), el('dd', {}, el('span', { class: 'state state-' + r.state, text: r.state }), ' ',
      el('span', { class: 'noprint' }, stateSel, ' ', stateBtn)));

  const atts = el('section', { class: 'attachments' }, el('h3', {}, 'Attachments'),
    r.attachments.length ? r.attachments.map(a => attachmentView(r.id, a)) : el('p', {}, 'none'));

  let conflict = null;
  if (r.heads.length > 1) {
    const title = el('input', { type: 'text', name: 'title', value: r.title, 'aria-label': 'Merged title', size: 60 });
    const narr = el('textarea', { name: 'narrative', 'aria-label': 'Merged narrative' });
    narr.value = r.narrative || '';
    const form = el('form', { on: { submit: async ev => {
      ev.preventDefault();
      try { await post('/api/merge', { id: r.id, title: title.value, narrative: narr.value }); status('merged'); recordView(r.id); }
      catch (e) { status(e.message, true); } } } },
      el('h4', {}, 'Merge: the result replaces every head (all stay in the history)'),
      el('p', {}, el('label', {}, 'Title ', title)), el('p', {}, el('label', {}, 'Narrative', narr)),
      el('button', { type: 'submit', class: 'primary', id: 'merge' }, 'Merge'));
    conflict = el('section', { class: 'conflict' }, el('h3', {}, `Conflict: ${r.heads.length} heads`),
      el('div', { class: 'heads' }, r.head_records.map(h => el('div', { class: 'head' },
        el('p', { class: 'id', text: 'revision ' + h.revision }),
        el('p', {}, 'by ', whoEl(h.signer), ', ', day(h.modified)),
        el('h4', { text: h.title }), recordBody(h)))), form);
  }

  const history = el('section', {}, el('h3', {}, 'History and custody'),
    el('p', {}, r.delivered ? 'Every revision this device wrote is covered by a server receipt.'
      : 'Not every revision this device wrote has a server receipt yet (or the record came from another device).'),
    el('p', { class: 'noprint' }, 'Each revision was signed by its device and its signature checked on arrival; its content is checked against the vault\'s keyed hash at every read.'),
    el('p', {}, el('button', { type: 'button', class: 'noprint', id: 'verify-record', on: { click: async ev => {
      const out = document.getElementById('custody-out');
      out.textContent = 'verifying every envelope, chunk and receipt…';
      try {
        const v = await post('/api/verify', { id: r.id });
        out.className = v.record_ok ? 'ok' : 'error';
        out.textContent = v.record_ok
          ? `Verified ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: every signature, content address, revision link and attachment chunk of this record holds (${v.envelopes} envelopes, ${v.chunks} chunks, ${v.receipts} server receipts checked in the vault).`
          : `${v.issues.length} problem(s) with this record: ` + v.issues.map(i => i.problem).join('; ');
      } catch (e) { out.textContent = e.message; out.className = 'error'; }
    } } }, 'Verify this record now'), ' ', el('span', { id: 'custody-out', role: 'status' })),
    el('table', {}, el('thead', {}, el('tr', {}, ['Revision', 'Kind', 'Time', 'Signed by', 'Parents', 'Head'].map(h => el('th', {}, h)))),
      el('tbody', {}, r.revisions.map(v => el('tr', {},
        el('td', { class: 'id', text: v.id.slice(0, 16) }), el('td', { text: v.kind }), el('td', { text: day(v.time) }),
        el('td', {}, whoEl(v.author)), el('td', { class: 'id', text: v.parents.map(p => p.slice(0, 8)).join(' ') }),
        el('td', { text: v.head ? 'yes' : '' }))))));

  const reply = el('textarea', { id: 'note-text', 'aria-label': 'Reply' });
  const notes = el('section', {}, el('h3', {}, 'Notes'),
    r.notes.length ? r.notes.map(n => el('div', { class: 'note' },
      el('div', {}, whoEl(n.author), ', ', day(n.time)), el('div', { class: 'text', text: n.text }))) : el('p', {}, 'none'),
    el('form', { class: 'noprint', on: { submit: async ev => {
      ev.preventDefault();
      if (!reply.value.trim()) return;
      try { await post('/api/note', { id: r.id, text: reply.value }); status('note saved; it travels at the next sync'); recordView(r.id); }
      catch (e) { status(e.message, true); } } } },
      el('label', { for: 'note-text' }, 'Reply (reaches the record\'s author and the coordinators at the next sync)'), reply,
      el('button', { type: 'submit', class: 'primary', id: 'send-note' }, 'Send note')));

  const retract = el('section', { class: 'noprint' }, el('h3', {}, 'Retraction'),
    el('p', {}, 'When the witness withdraws consent: every copy of the record, its attachments and notes is destroyed here and, at the next sync, everywhere. Only the fact of the retraction remains.'),
    el('button', { type: 'button', class: 'danger', id: 'retract', on: { click: async () => {
      if (!window.confirm('Retract this record? Every copy everywhere will be destroyed. This cannot be undone.')) return;
      try { await post('/api/retract', { id: r.id, confirm: r.id }); status('retracted'); location.hash = '#/'; }
      catch (e) { status(e.message, true); } } } }, 'Retract…'));

  show(el('article', { class: 'record' },
    el('p', { class: 'noprint' }, el('a', { href: '#/?' + S.query }, '← Records')),
    el('h2', { text: r.title || '(untitled)' }), meta,
    r.heads.length > 1 ? el('p', {}, el('span', { class: 'mark conflict' }, 'conflict'), ' the content below is the newest head; see every head under Conflict.') : null,
    recordBody(r), atts, conflict, notes, history, retract));
  document.title = (r.title || 'Record') + ' — FieldVault desk';
}

/* ---- devices ------------------------------------------------------------- */

async function devicesView(refresh) {
  status('loading…');
  let j;
  try { j = await api('/api/devices', refresh ? 'refresh=1' : ''); } catch (e) { status(e.message, true); return; }
  status('');
  const out = el('div', { id: 'invite-out' });
  const name = el('input', { type: 'text', name: 'name', required: true, 'aria-label': 'Device name' });
  const role = el('select', { name: 'role', 'aria-label': 'Role' }, el('option', { value: 'field' }, 'field'), el('option', { value: 'coordinator' }, 'coordinator'));
  show(el('h2', {}, 'The organisation\'s devices'),
    j.known ? null : el('p', { class: 'error', text: 'The server did not give the list: ' + (j.why || 'unknown reason') }),
    el('p', {}, el('button', { type: 'button', on: { click: () => devicesView(true) } }, 'Ask the server again')),
    el('table', {}, el('thead', {}, el('tr', {}, ['Name', 'Role', 'Enrolled', 'Device id', ''].map(h => el('th', {}, h)))),
      el('tbody', {}, j.devices.map(d => el('tr', {},
        el('td', { text: d.name }), el('td', { text: d.role + (d.revoked ? ' (revoked)' : '') }), el('td', { text: day(d.enrolled) }),
        el('td', { class: 'id', text: d.id }),
        el('td', {}, d.revoked || d.id === S.device ? null : el('button', { type: 'button', class: 'danger', on: { click: async () => {
          if (!window.confirm('Revoke ' + d.name + '? It will be refused from its next connection on.')) return;
          try { await post('/api/revoke', { device: d.id }); status('revoked'); devicesView(false); } catch (e) { status(e.message, true); } } } }, 'Revoke')))))),
    el('h3', {}, 'Invite a device'),
    el('form', { on: { submit: async ev => {
      ev.preventDefault();
      try { const r = await post('/api/invite', { name: name.value, role: role.value });
        out.replaceChildren(el('p', {}, 'Give this single-use invite to the device (valid 7 days):'), el('p', { class: 'invite', text: r.invite })); }
      catch (e) { status(e.message, true); } } } },
      el('label', {}, 'Name ', name), ' ', el('label', {}, 'Role ', role), ' ', el('button', { type: 'submit', class: 'primary' }, 'Create invite')),
    out);
}

/* ---- sync, export, verify ------------------------------------------------ */

async function pollSync(bar, msg) {
  for (;;) {
    let j;
    try { j = await api('/api/sync'); } catch (e) { msg.textContent = e.message; return; }
    if (j.total) { bar.max = j.total; bar.value = j.done; } else bar.removeAttribute('value');
    if (!j.running) {
      if (j.result) { msg.textContent = j.result.message; msg.className = j.result.ok ? 'ok' : 'error'; bar.max = 1; bar.value = 1; }
      return;
    }
    await new Promise(res => setTimeout(res, 400));
  }
}

function toolsView() {
  const bar = el('progress', { max: 1, value: 0, 'aria-label': 'Sync progress' });
  const msg = el('span', { id: 'sync-msg', role: 'status' });
  const fmt = el('select', { name: 'format', 'aria-label': 'Format' }, ['json', 'csv', 'html', 'evidence'].map(f => el('option', { value: f }, f)));
  const path = el('input', { type: 'text', name: 'path', size: 50, placeholder: '/absolute/path/of/a/new/file-or-directory', 'aria-label': 'Export path' });
  const exMsg = el('p', { role: 'status' });
  const verifyOut = el('div', { id: 'verify-out' });
  show(el('h2', {}, 'Sync, export, verify'),
    el('section', {}, el('h3', {}, 'Sync now'),
      el('button', { type: 'button', class: 'primary', id: 'sync', on: { click: async () => {
        msg.textContent = 'syncing…'; msg.className = '';
        try { await post('/api/sync', {}); } catch (e) { if (!/running/.test(e.message)) { msg.textContent = e.message; msg.className = 'error'; return; } }
        pollSync(bar, msg); } } }, 'Sync now'), ' ', bar, ' ', msg),
    el('section', {}, el('h3', {}, 'Export'),
      el('form', { on: { submit: async ev => {
        ev.preventDefault();
        try { const r = await post('/api/export', { format: fmt.value, path: path.value }); exMsg.textContent = `${r.exported} records written to ${path.value}`; exMsg.className = 'ok'; }
        catch (e) { exMsg.textContent = e.message; exMsg.className = 'error'; } } } },
        el('label', {}, 'Format ', fmt), ' ', el('label', {}, 'To ', path), ' ', el('button', { type: 'submit', class: 'primary' }, 'Export')),
      el('p', {}, 'json and csv write a new file, html and evidence a new directory; nothing is overwritten. A decrypted export is as sensitive as the vault.'), exMsg),
    el('section', {}, el('h3', {}, 'Verify the chain of custody'),
      el('button', { type: 'button', id: 'verify', on: { click: async () => {
        verifyOut.textContent = 'verifying…';
        try { const r = await post('/api/verify', {});
          verifyOut.replaceChildren(el('p', { class: r.ok ? 'ok' : 'error' },
            `${r.ok ? 'OK' : 'FAILED'}: ${r.envelopes} envelopes, ${r.chunks} chunks, ${r.receipts} receipts checked, ${r.failures} failures`),
            el('ul', {}, r.issues.map(i => el('li', {}, el('span', { class: 'id', text: (i.record || '').slice(0, 16) }), ' ', el('span', { text: i.problem })))));
        } catch (e) { verifyOut.textContent = e.message; } } } }, 'Verify'), verifyOut));
  api('/api/sync').then(j => { if (j.running) pollSync(bar, msg); }).catch(() => {});
}

/* ---- routing ------------------------------------------------------------- */

function route() {
  const h = location.hash || '#/';
  document.title = 'FieldVault desk';
  if (h.startsWith('#/r/')) return recordView(decodeURIComponent(h.slice(4)));
  if (h === '#/devices') return devicesView(false);
  if (h === '#/tools') return toolsView();
  const i = h.indexOf('?');
  return listView(new URLSearchParams(i >= 0 ? h.slice(i + 1) : 'limit=50'));
}

document.addEventListener('keydown', ev => {
  const t = ev.target;
  if (ev.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement)) {
    const q = document.getElementById('q');
    if (q) { ev.preventDefault(); q.focus(); }
  }
});

async function start() {
  try {
    const s = await api('/api/session');
    S.csrf = s.csrf; S.device = s.device; S.names = s.names || {};
    if (s.locked) {
      window.addEventListener('hashchange', route);
      return unlockView();
    }
  } catch (e) {
    show(el('p', { class: 'error', text: e.message }));
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
