// The console's pages: each renders into <main> from the admin API (docs/admin-api.md).
import { get, post, base } from './api.js';
import { h, drawer, showError, table, confirmAction, fmtTime } from './ui.js';

const fail = (e) => window.dispatchEvent(new CustomEvent('keyhold-error', { detail: e }));
let keysTimer = null;

// ------------------------------------------------------------------------------------ keys

function jobView(job) {
  if (!job || job.state === 'none') return h('p', { id: 'job' }, 'No re-encryption job since the server started.');
  const done = job.moved + job.skipped + job.failed;
  const pct = job.state === 'done' ? 100 : job.total ? Math.min(100, Math.floor((100 * done) / job.total)) : 0;
  const eta = job.state === 'running' && job.eta_s !== null && job.eta_s !== undefined ? `, about ${job.eta_s} s left` : '';
  return h('div', { id: 'job' },
    h('label', { for: 'job-progress' }, `Re-encryption to version ${job.target}: ${job.state}`),
    h('progress', { id: 'job-progress', max: 100, value: pct, 'aria-valuetext': `${pct} %` }),
    h('p', { id: 'job-text' }, `${pct} % · ${job.moved} moved, ${job.skipped} skipped, ${job.failed} failed of ${job.total}`
      + (job.rate ? ` · ${Math.round(job.rate)} records/s` : '') + eta));
}

async function keyAction(v, action, word) {
  const texts = {
    revoke: `Reads of the records under version ${v} will be refused until it is reinstated.`,
    reinstate: `Version ${v} returns to the state it had before it was revoked.`,
    retire: `Version ${v} is retired; it must hold no records.`,
    destroy: `The key of version ${v} is deleted from the key store for ever. This cannot be undone.`,
  };
  if (!(await confirmAction(`${action[0].toUpperCase()}${action.slice(1)} version ${v}?`, texts[action], word))) return;
  try {
    await post(`admin/keys/${v}/${action}`);
    await renderKeys();
  } catch (e) {
    fail(e);
  }
}

function actionsOf(v) {
  const b = (action, label, cls, word) => h('button', {
    type: 'button', class: cls, 'data-action': action, 'data-version': v.version,
    'aria-label': `${label} version ${v.version}`, onclick: () => keyAction(v.version, action, word),
  }, label);
  switch (v.state) {
    case 'archived': return [b('revoke', 'Revoke', 'danger'), b('retire', 'Retire')];
    case 'revoked': return [b('reinstate', 'Reinstate'), b('retire', 'Retire')];
    case 'retired': return [b('destroy', 'Destroy', 'danger', `destroy ${v.version}`)];
    default: return [];
  }
}

async function renderKeys() {
  const draw = drawer();
  clearTimeout(keysTimer);
  const k = await get('admin/keys');
  const rows = k.versions.map((v) => h('tr', { 'data-version': v.version },
    h('td', {}, v.version), h('td', {}, h('span', { class: `state state-${v.state}` }, v.state)),
    h('td', { class: 'hide-narrow' }, v.algorithm), h('td', { class: 'hide-narrow' }, fmtTime(v.created)),
    h('td', { class: 'num' }, v.records), h('td', { class: 'num hide-narrow' }, v.encrypts),
    h('td', { class: 'num hide-narrow' }, v.decrypts), h('td', {}, actionsOf(v))));
  const rekey = h('button', { type: 'button', class: 'primary', id: 'rekey' }, 'Rekey');
  rekey.disabled = k.job?.state === 'running' || k.sealed;
  rekey.addEventListener('click', async () => {
    if (!(await confirmAction('Rekey?', 'A new active version is made and every record moves to it in the background.'))) return;
    rekey.disabled = true;
    try {
      await post('admin/keys/rekey');
      await renderKeys();
    } catch (e) {
      fail(e);
      rekey.disabled = false;
    }
  });
  const kill = h('button', { type: 'button', class: 'danger', id: 'revoke-all' }, 'Revoke every version');
  kill.addEventListener('click', async () => {
    if (!(await confirmAction('Kill switch', 'Every active and archived version is revoked: every read and write of the tenant is refused until reinstated.', 'revoke all'))) return;
    try { await post('admin/keys/revoke-all'); await renderKeys(); } catch (e) { fail(e); }
  });
  const back = h('button', { type: 'button', id: 'reinstate-all' }, 'Reinstate every revoked version');
  back.addEventListener('click', async () => {
    if (!(await confirmAction('Reinstate all?', 'Every revoked version returns to its former state.'))) return;
    try { await post('admin/keys/reinstate-all'); await renderKeys(); } catch (e) { fail(e); }
  });
  draw(h('h1', {}, 'Keys'),
    k.sealed ? h('p', { class: 'error' }, 'The server is sealed: key routes answer 503 until the operator unseals it.') : null,
    h('p', {}, `Active version: ${k.active ?? 'none'} · key store: ${k.keystore?.driver ?? '?'}`),
    table(['Version', 'State', { t: 'Algorithm', cls: 'hide-narrow' }, { t: 'Created', cls: 'hide-narrow' },
      'Records', { t: 'Encrypts', cls: 'hide-narrow' }, { t: 'Decrypts', cls: 'hide-narrow' }, 'Actions'], rows),
    h('div', { class: 'row' }, rekey), jobView(k.job),
    h('section', { class: 'kill', 'aria-labelledby': 'kill-title' }, h('h2', { id: 'kill-title' }, 'Kill switch'),
      h('p', {}, 'Revoke every version of the tenant at once (an incident), or undo it.'), kill, back));
  // the job's progress, live, for as long as the Keys page is shown
  const onKeys = () => location.hash === '' || location.hash.startsWith('#/keys');
  if (k.job?.state === 'running' && onKeys()) {
    keysTimer = setTimeout(() => { if (onKeys()) renderKeys().catch(fail); }, 1000);
  }
}

// ------------------------------------------------------------------------------- approvals

async function renderApprovals(_q, cfg) {
  const draw = drawer();
  const org = `organizations/${encodeURIComponent(cfg.tenant)}/auth-requests`;
  const list = (await get(org)).data || [];
  const answer = async (ids, approved) => {
    try {
      if (ids.length === 1) {
        await post(`${org}/${ids[0]}`, { requestApproved: approved });
      } else {
        const r = approved
          ? await post(org, ids.map((id) => ({ id, approved: true })))
          : await post(`${org}/deny`, { ids });
        const bad = (r.data || []).filter((x) => x.code);
        if (bad.length) showError({ message: bad.map((x) => `${x.id}: ${x.message}`).join('; ') });
      }
      await renderApprovals(_q, cfg);
    } catch (e) {
      fail(e);
    }
  };
  const rows = list.map((r) => h('tr', { 'data-id': r.id },
    h('td', {}, h('input', { type: 'checkbox', class: 'pick', value: r.id, 'aria-label': `Select request of ${r.email || r.userId}` })),
    h('td', {}, r.email || r.userId, h('div', { class: 'mono hide-narrow' }, r.userId)),
    h('td', {}, r.requestDeviceType, h('div', { class: 'mono hide-narrow' }, r.requestDeviceIdentifier)),
    h('td', { class: 'hide-narrow' }, fmtTime(r.creationDate)),
    h('td', { class: 'fingerprint' }, r.fingerprint),
    h('td', {}, `${(r.approvals || []).length} of ${r.needed ?? 1}`,
      (r.approvals || []).map((a) => h('div', { class: 'mono' }, `by ${a.by} at ${fmtTime(a.at)}`))),
    h('td', {},
      h('button', { type: 'button', class: 'primary', 'data-approve': r.id, 'aria-label': `Approve request of ${r.email || r.userId}`, onclick: () => answer([r.id], true) }, 'Approve'),
      h('button', { type: 'button', class: 'danger', 'data-deny': r.id, 'aria-label': `Deny request of ${r.email || r.userId}`, onclick: () => answer([r.id], false) }, 'Deny'))));
  const picked = () => [...document.querySelectorAll('input.pick:checked')].map((x) => x.value);
  draw(h('h1', {}, 'Approvals'),
    list.length ? h('p', {}, 'Compare the fingerprint phrase with the one the member\'s device shows before approving.') :
      h('p', { id: 'no-approvals', class: 'notice' }, 'No pending admin-approval requests.'),
    list.length ? table(['', 'Member', 'Device', { t: 'Requested', cls: 'hide-narrow' }, 'Fingerprint phrase', 'Approvals', 'Answer'], rows) : null,
    list.length ? h('div', { class: 'row' },
      h('button', { type: 'button', id: 'approve-selected', onclick: () => picked().length && answer(picked(), true) }, 'Approve selected'),
      h('button', { type: 'button', id: 'deny-selected', class: 'danger', onclick: () => picked().length && answer(picked(), false) }, 'Deny selected')) : null,
    h('div', { class: 'row' }, h('button', { type: 'button', id: 'refresh', onclick: () => renderApprovals(_q, cfg).catch(fail) }, 'Refresh')));
}

// --------------------------------------------------------------------------------- devices

async function renderDevices(q) {
  const draw = drawer();
  const member = q.get('member') || '';
  const input = h('input', { id: 'member', name: 'member', value: member, size: 38, autocomplete: 'off', spellcheck: 'false' });
  const form = h('form', { class: 'row', id: 'member-form' },
    h('label', { for: 'member' }, 'Member (user id)', input), h('button', { type: 'submit', class: 'primary' }, 'Show devices'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/devices?member=${encodeURIComponent(input.value.trim())}`;
  });
  draw(h('h1', {}, 'Devices'), form);
  if (!member) return;
  const r = await get(`admin/members/${encodeURIComponent(member)}/devices`);
  const rows = r.devices.map((d) => h('tr', { 'data-id': d.id },
    h('td', {}, d.name), h('td', { class: 'hide-narrow' }, d.type), h('td', { class: 'mono' }, d.identifier),
    h('td', { class: 'hide-narrow' }, fmtTime(d.creationDate)),
    h('td', { class: 'trusted' }, d.isTrusted ? 'trusted' : 'not trusted'),
    h('td', {}, d.isTrusted ? h('button', {
      type: 'button', class: 'danger', 'data-untrust': d.id, 'aria-label': `Untrust ${d.name}`,
      onclick: async () => {
        if (!(await confirmAction(`Untrust ${d.name}?`, 'The device can no longer unlock without the member\'s approval.'))) return;
        try {
          await post(`admin/members/${encodeURIComponent(member)}/devices/${encodeURIComponent(d.id)}/untrust`);
          await renderDevices(q);
        } catch (e) { fail(e); }
      },
    }, 'Untrust') : null)));
  draw.append(
    r.devices.length ? table(['Name', { t: 'Type', cls: 'hide-narrow' }, 'Identifier', { t: 'Created', cls: 'hide-narrow' }, 'Trust', ''], rows)
      : h('p', { class: 'notice' }, 'This member has no devices.'));
}

// ----------------------------------------------------------------------------------- audit

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// The tenant's chains (docs/audit.md "Replicas"): the unnamed replica's, which every answer
// lists the named ones beside, then each named replica's (`?replica=`). query: the page wanted
// of each. [{replica ('' the unnamed), page}].
async function auditChains(query) {
  const first = await get(`admin/audit?${query}`);
  const names = first.replicas || [];
  const rest = await Promise.all(names.map((n) => get(`admin/audit?${query}&replica=${encodeURIComponent(n)}`)));
  return [{ replica: '', page: first }, ...names.map((n, i) => ({ replica: n, page: rest[i] }))];
}

// As they happened: by time (fixed-width UTC, so text order), then replica, then seq, as
// `keyhold audit tail` merges chains.
function byTime(a, b) {
  const ka = [a.time, a.replica || ''];
  const kb = [b.time, b.replica || ''];
  for (let i = 0; i < 2; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
  return a.seq - b.seq;
}

// Every chain whole, as `keyhold audit export` writes them: one record per line, the unnamed
// replica's chain first, then each named replica's, each in seq order.
async function exportChains(cfg) {
  const lines = [];
  for (const c of await auditChains('last=1')) {
    const q = c.replica ? `&replica=${encodeURIComponent(c.replica)}` : '';
    for (let since = 1; ;) {
      const r = await get(`admin/audit?since=${since}&limit=10000${q}`);
      for (const rec of r.records) lines.push(JSON.stringify(rec));
      if (!r.records.length || r.next > r.head) break;
      since = r.next;
    }
  }
  download(`audit-${cfg.tenant}.jsonl`, lines.map((l) => `${l}\n`).join(''), 'application/x-ndjson');
}

// The last signed checkpoint of one chain among its records read.
function checkpointText(c) {
  const cp = [...c.page.records].reverse().find((x) => x.action === 'checkpoint');
  return cp
    ? `Last signed checkpoint: seq ${cp.seq} at ${fmtTime(cp.time)}; ${c.page.head - cp.seq} record(s) since.`
    : `No signed checkpoint among the last ${c.page.records.length} records (head ${c.page.head}).`;
}

async function renderAudit(q, cfg) {
  const draw = drawer();
  const last = Math.min(Math.max(Number(q.get('last')) || 500, 1), 10000);
  // the last `last` of them all are among the last `last` of each chain
  const chains = await auditChains(`last=${last}`);
  const named = chains.length > 1;
  const records = chains.flatMap((c) => c.page.records).sort(byTime).slice(-last);
  const f = { member: q.get('member') || '', action: q.get('action') || '', from: q.get('from') || '', to: q.get('to') || '' };
  const actions = [...new Set(records.map((x) => x.action))].sort();
  const fromMs = f.from ? Date.parse(`${f.from}Z`) : -Infinity;
  const toMs = f.to ? Date.parse(`${f.to}Z`) : Infinity;
  const shown = records.filter((x) => (!f.member || x.actor === f.member || x.target === f.member)
    && (!f.action || x.action === f.action)
    && Date.parse(x.time) >= fromMs && Date.parse(x.time) <= toMs).reverse();
  const inp = (id, label, type, value) => h('label', { for: id }, label, h('input', { id, name: id, type, value, step: type === 'datetime-local' ? 1 : undefined }));
  const sel = h('select', { id: 'action', name: 'action' }, h('option', { value: '' }, 'any'),
    actions.map((a) => h('option', { value: a, selected: a === f.action }, a)));
  const form = h('form', { class: 'row', id: 'audit-filter' },
    inp('member', 'Member or actor', 'text', f.member), h('label', { for: 'action' }, 'Action', sel),
    inp('from', 'From (UTC)', 'datetime-local', f.from), inp('to', 'To (UTC)', 'datetime-local', f.to),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const k of ['member', 'action', 'from', 'to']) {
      const v = form.elements[k].value.trim();
      if (v) p.set(k, v);
    }
    location.hash = `#/audit?${p}`;
  });
  const exp = h('button', { type: 'button', id: 'export' }, 'Download export (JSONL)');
  exp.addEventListener('click', () => exportChains(cfg).catch(fail));
  const pk = h('button', { type: 'button', id: 'public-key' }, 'Download public key');
  pk.addEventListener('click', async () => {
    try { download(`audit-${cfg.tenant}.pem`, (await get('admin/audit/public-key')).pem, 'application/x-pem-file'); } catch (e) { fail(e); }
  });
  // a seq is of its replica's chain: with several chains each row names its replica
  const rows = shown.map((x) => h('tr', { 'data-seq': x.seq, 'data-replica': x.replica || '' },
    h('td', { class: 'num' }, x.seq), named ? h('td', { class: 'replica mono' }, x.replica || 'unnamed') : null,
    h('td', {}, fmtTime(x.time)), h('td', { class: 'mono' }, x.actor),
    h('td', { class: 'action' }, x.action), h('td', { class: 'mono hide-narrow' }, x.target),
    h('td', {}, x.outcome), h('td', { class: 'hide-narrow' }, x.client)));
  const verifyHint = ' Verify an export offline with keyhold audit verify.';
  const single = checkpointText(chains[0]);
  const notice = named
    ? chains.filter((c) => c.page.head).map((c) => `Replica ${c.replica || 'unnamed'}: ${checkpointText(c)}`).join(' ') + verifyHint
    : single + (single.startsWith('Last') ? verifyHint : '');
  draw(h('h1', {}, 'Audit'),
    h('p', { id: 'checkpoint', class: 'notice' }, notice),
    h('div', { class: 'row' }, exp, pk), form,
    h('p', { id: 'audit-count' }, `${shown.length} of the last ${records.length} records${named ? ` of ${chains.length} replicas' chains` : ''}`),
    table(['Seq', ...(named ? ['Replica'] : []), 'Time', 'Actor', 'Action', { t: 'Target', cls: 'hide-narrow' }, 'Outcome', { t: 'Client', cls: 'hide-narrow' }], rows));
}

// ---------------------------------------------------------------------------------- health

async function renderHealth(_q, cfg) {
  const draw = drawer();
  const hr = await fetch('/health', { headers: { Accept: 'application/json' } });
  const health = await hr.json().catch(() => ({}));
  const k = await get('admin/keys');
  const item = (label, value, id) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', { id }, value));
  draw(h('h1', {}, 'Health'),
    h('div', { class: 'table-wrap' }, h('table', {}, h('tbody', {},
      item('Server', hr.ok ? 'ready' : `not ready: ${health.message || hr.status}`, 'health-ready'),
      item('Sealed', k.sealed ? 'yes' : 'no', 'health-sealed'),
      item('Key store', `${k.keystore?.driver ?? '?'}${k.keystore?.migration ? `, last migration ${k.keystore.migration.from} → ${k.keystore.migration.to}` : ''}`, 'health-keystore'),
      item('Issuer', cfg.issuer, 'health-issuer'),
      item('Active key version', k.active ?? 'none', 'health-active'),
      item('Re-encryption job', k.job?.state ?? 'none', 'health-job')))),
    h('p', {}, `API base: ${base}`));
}

export const pages = {
  keys: { title: 'Keys', render: renderKeys },
  approvals: { title: 'Approvals', render: renderApprovals },
  devices: { title: 'Devices', render: renderDevices },
  audit: { title: 'Audit', render: renderAudit },
  health: { title: 'Health', render: renderHealth },
};
