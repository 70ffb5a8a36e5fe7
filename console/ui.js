// DOM helpers: elements built with textContent only (never innerHTML), so nothing the server
// or a member sent can become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function showError(e) {
  const box = document.getElementById('error');
  if (!e) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.textContent = e.code ? `${e.message} (${e.code})` : e.message || String(e);
  box.hidden = false;
}

export function setMain(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

// A page draws once its API answers. If the admin moved on meanwhile (a click, or the page the
// sign-in opened still loading), a late answer must not replace the page now shown: the drawer
// draws only while the location is the one its render started at.
export function drawer() {
  const at = location.hash;
  const live = () => location.hash === at;
  const draw = (...children) => { if (live()) setMain(...children); };
  draw.append = (...children) => { if (live()) document.getElementById('main').append(...children); };
  return draw;
}

export function table(headers, rows) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      // a header {t, cls}: its class (hide-narrow) goes on the column's th
      h('thead', {}, h('tr', {}, headers.map((x) => (x && x.t !== undefined
        ? h('th', { scope: 'col', class: x.cls }, x.t) : h('th', { scope: 'col' }, x))))),
      h('tbody', {}, rows)));
}

// Asks before an action. With `word`, the admin must type it to enable the button (destroy,
// the kill switch). Resolves true or false.
export function confirmAction(title, text, word) {
  const dlg = document.getElementById('confirm');
  const input = document.getElementById('confirm-typed');
  const ok = document.getElementById('confirm-ok');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-word').textContent = word || '';
  document.getElementById('confirm-typed-label').hidden = !word;
  input.hidden = !word;
  input.value = '';
  ok.disabled = Boolean(word);
  input.oninput = () => { ok.disabled = input.value !== word; };
  return new Promise((resolve) => {
    const done = (v) => {
      dlg.onclose = null;
      if (dlg.open) dlg.close();
      resolve(v);
    };
    document.getElementById('confirm-cancel').onclick = () => done(false);
    document.getElementById('confirm-form').onsubmit = (ev) => {
      ev.preventDefault();
      if (!ok.disabled) done(true);
    };
    dlg.onclose = () => done(false);
    dlg.showModal();
    (word ? input : ok).focus();
  });
}

export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
