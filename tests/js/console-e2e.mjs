// Drives keyhold's web console in Debian's chromium (headless, through playwright-core) for
// tests/integration/test_console.py, one scenario per run:
//
//   node console-e2e.mjs SCENARIO.json
//
// SCENARIO.json: {"name", "url" (the console, https://127.0.0.1:PORT/console/), "user",
// "password", "screenshots" (folder), "allow_http" ([statuses the API may answer with an
// error]), "downloads" (folder), ...the scenario's own fields}. Prints one JSON line, the
// scenario's findings, and exits 0; on any failure, a console error or a Content-Security-Policy
// violation reported by the browser, prints the reason and exits 1.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { chromium } from 'playwright-core';

const sc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const problems = [];
const found = {};

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  fs.mkdirSync(sc.screenshots, { recursive: true });
  await page.screenshot({ path: path.join(sc.screenshots, `${sc.name}-${name}.png`), fullPage: true });
}

// Signs in through the provider's login form, with the keyboard on the console's side.
async function login(page, user, password) {
  await page.goto(sc.url);
  await page.locator('#login').waitFor();
  await shot(page, 'signin');
  check(await page.evaluate(() => document.activeElement?.id) === 'login', 'the sign-in button has focus');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/interaction\//);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.href.startsWith(sc.url) && !u.search);
}

async function signedIn(page) {
  await page.locator('#nav').waitFor({ state: 'visible' });
  check(await page.evaluate(() => localStorage.length === 0 && document.cookie === ''
    && sessionStorage.length === 0), 'no token in storage or cookies');
}

async function go(page, hash, ready) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.locator(ready).first().waitFor();
}

async function confirm(page, word) {
  const ok = page.locator('#confirm-ok');
  await ok.waitFor({ state: 'visible' });
  if (word) {
    check(await ok.isDisabled(), 'confirm waits for the typed word');
    await page.fill('#confirm-typed', `${word}x`);
    check(await ok.isDisabled(), 'a wrong word keeps confirm disabled');
    await page.fill('#confirm-typed', word);
  }
  await ok.click();
  await ok.waitFor({ state: 'hidden' });
}

const scenarios = {
  async keys(page) {
    await login(page, sc.user, sc.password);
    await signedIn(page);
    const row1 = page.locator('tr[data-version="1"]');
    await row1.waitFor();
    check((await row1.locator('.state').textContent()) === 'active', 'version 1 is active');
    found.records_v1 = Number(await row1.locator('td.num').first().textContent());
    await shot(page, 'keys');
    await page.click('#rekey');
    await confirm(page);
    const seen = new Set();
    // the job moves every record: poll the page (it polls the server) until it says 100 %
    for (;;) {
      const text = await page.locator('#job-text').textContent().catch(() => '');
      seen.add(text.split(' ')[0]);
      if (text.startsWith('100 %') && (await page.locator('label[for=job-progress]').textContent()).endsWith('done')) break;
      await page.waitForTimeout(100);
    }
    found.progress = [...seen];
    found.progress_value = await page.locator('#job-progress').getAttribute('value');
    await shot(page, 'keys-rekeyed');
    const row2 = page.locator('tr[data-version="2"]');
    check((await row2.locator('.state').textContent()) === 'active', 'version 2 is active');
    check((await row1.locator('.state').textContent()) === 'archived', 'version 1 is archived');
    check(await row1.locator('td.num').first().textContent() === '0', 'no record left under version 1');
    // retire then destroy version 1, destroy with its typed confirmation
    await row1.locator('button[data-action=retire]').click();
    await confirm(page);
    await page.locator('tr[data-version="1"] .state', { hasText: 'retired' }).waitFor();
    await page.locator('tr[data-version="1"] button[data-action=destroy]').click();
    await confirm(page, 'destroy 1');
    await page.locator('tr[data-version="1"] .state', { hasText: 'destroyed' }).waitFor();
    await shot(page, 'keys-destroyed');
    // the kill switch, then back
    await page.click('#revoke-all');
    await confirm(page, 'revoke all');
    await page.locator('tr[data-version="2"] .state', { hasText: 'revoked' }).waitFor();
    await page.click('#reinstate-all');
    await confirm(page);
    await page.locator('tr[data-version="2"] .state', { hasText: 'active' }).waitFor();
  },

  async approvals(page) {
    await login(page, sc.user, sc.password);
    await signedIn(page);
    await go(page, '#/approvals', `tr[data-id="${sc.approve}"]`);
    const fp = await page.locator(`tr[data-id="${sc.approve}"] .fingerprint`).textContent();
    check(fp === sc.fingerprint, `fingerprint phrase shown (${fp})`);
    await shot(page, 'approvals');
    await page.click(`button[data-approve="${sc.approve}"]`);
    await page.locator(`tr[data-id="${sc.approve}"]`).waitFor({ state: 'detached' });
    await page.click(`button[data-deny="${sc.deny}"]`);
    await page.locator(`tr[data-id="${sc.deny}"]`).waitFor({ state: 'detached' });
    for (const id of sc.bulk_deny) await page.check(`input.pick[value="${id}"]`);
    await page.click('#deny-selected');
    await page.locator(`tr[data-id="${sc.bulk_deny[0]}"]`).waitFor({ state: 'detached' });
    for (const id of sc.bulk_approve) await page.check(`input.pick[value="${id}"]`);
    await page.click('#approve-selected');
    await page.locator(`tr[data-id="${sc.bulk_approve[0]}"]`).waitFor({ state: 'detached' });
    check(await page.locator('#error').isHidden(), 'no error shown');
    await shot(page, 'approvals-answered');
  },

  async devices(page) {
    // The Keys page that sign-in opens answers late (its admin/keys held back) while the admin
    // has already moved to Devices: the late answer must not replace the Devices page.
    let keysAsked = 0;
    let keysAnswered;
    const keysPageAsked = new Promise((resolve) => {
      page.route('**/admin/keys', async (route) => {
        keysAsked += 1;
        if (keysAsked !== 2) return route.continue();  // the 1st is the sign-in's admin check
        resolve();
        await new Promise((r) => { setTimeout(r, 1500); });
        keysAnswered = route.continue();
        return keysAnswered;
      });
    });
    await login(page, sc.user, sc.password);
    await signedIn(page);
    await keysPageAsked;
    await go(page, '#/devices', '#member');
    while (!keysAnswered) await new Promise((r) => { setTimeout(r, 100); });
    await keysAnswered;
    await page.waitForTimeout(300);  // the Keys page's render, had it drawn, has drawn by now
    check(await page.locator('#member').count() === 1, 'a late answer of a page left keeps Devices shown');
    await page.unroute('**/admin/keys');
    await page.fill('#member', sc.member);
    await page.press('#member', 'Enter');
    const row = page.locator(`tr[data-id="${sc.device}"]`);
    await row.waitFor();
    check(await row.locator('.trusted').textContent() === 'trusted', 'the device is trusted');
    await shot(page, 'devices');
    await row.locator('button[data-untrust]').click();
    await confirm(page);
    await page.locator(`tr[data-id="${sc.device}"] .trusted`, { hasText: 'not trusted' }).waitFor();
    await shot(page, 'devices-untrusted');
    // an error of the API is shown with its message
    await go(page, '#/devices?member=no%20such', '#member');
    await page.locator('#error').waitFor({ state: 'visible' });
    found.error = await page.locator('#error').textContent();
  },

  async audit(page) {
    await login(page, sc.user, sc.password);
    await signedIn(page);
    await go(page, '#/audit', '#audit-count');
    found.checkpoint = await page.locator('#checkpoint').textContent();
    await shot(page, 'audit');
    await page.selectOption('#action', sc.action);
    // the unfiltered page stays until the filtered one draws: wait for a new count, not any
    await page.evaluate(() => { document.getElementById('audit-count').dataset.stale = '1'; });
    await page.click('#audit-filter button[type=submit]');
    await page.waitForFunction((a) => location.hash.includes(`action=${a}`), sc.action);
    await page.locator('#audit-count:not([data-stale])').waitFor();
    const actions = await page.locator('tbody td.action').allTextContents();
    check(actions.length > 0 && actions.every((a) => a === sc.action), `only ${sc.action} rows (${actions})`);
    found.filtered = actions.length;
    await shot(page, 'audit-filtered');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    found.export_name = dl.suggestedFilename();
    found.export = path.join(sc.downloads, 'export.jsonl');
    await dl.saveAs(found.export);
  },

  // a database holding several replicas' chains: every chain's records, merged by time,
  // each row naming its replica; the export holds every chain
  async audit_replicas(page) {
    await login(page, sc.user, sc.password);
    await signedIn(page);
    await go(page, '#/audit', '#audit-count');
    found.checkpoint = await page.locator('#checkpoint').textContent();
    found.count = await page.locator('#audit-count').textContent();
    found.header = await page.locator('thead th').allTextContents();
    found.rows = await page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => ({
      replica: r.dataset.replica, seq: Number(r.dataset.seq),
      shown: r.querySelector('td.replica')?.textContent ?? null })));
    await shot(page, 'audit-replicas');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    found.export = path.join(sc.downloads, 'export-replicas.jsonl');
    await dl.saveAs(found.export);
  },

  async not_admin(page) {
    await login(page, sc.user, sc.password);
    await page.locator('#not-admin').waitFor();
    found.text = await page.locator('main').textContent();
    await shot(page, 'not-admin');
    await page.click('#logout');
    await page.locator('#login').waitFor();
  },

  // the guard itself: an inline script the policy must block, which must fail this run
  async csp_probe(page) {
    await page.goto(sc.url);
    await page.locator('#login').waitFor();
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'document.title = "inline ran"';
      document.body.append(s);
    });
    await page.waitForFunction(() => true);
    await page.waitForTimeout(200);
    found.title = await page.title();
  },

  // every page at 1280x800 and at phone width, and the health page
  async tour(page) {
    await login(page, sc.user, sc.password);
    await signedIn(page);
    await go(page, '#/health', '#health-ready');
    found.health = await page.locator('#health-ready').textContent();
    found.issuer = await page.locator('#health-issuer').textContent();
    for (const [w, hgt, tag] of [[1280, 800, 'wide'], [390, 844, 'phone']]) {
      await page.setViewportSize({ width: w, height: hgt });
      for (const [hash, ready] of [['#/keys', 'tr[data-version]'], ['#/approvals', 'h1'], ['#/devices', '#member'],
        ['#/audit', '#audit-count'], ['#/health', '#health-ready']]) {
        await go(page, hash, ready);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 0, `${hash} fits ${w} px (overflows by ${overflow})`);
        await shot(page, `${tag}-${hash.slice(2)}`);
      }
    }
    // the keyboard reaches the navigation
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.locator('#nav a[href="#/audit"]').focus();
    await page.keyboard.press('Enter');
    await page.locator('#audit-count').waitFor();
    await page.click('#logout');
    await page.locator('#login').waitFor();
    found.signed_out = await page.locator('main').textContent();
  },
};

const browser = await chromium.launch({
  executablePath: process.env.KEYHOLD_CHROMIUM || '/usr/bin/chromium',
  headless: true,
});
let status = 0;
try {
  // the test CA signs keyholdd's and the provider's certificates; chromium does not know it
  const context = await browser.newContext({
    ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, acceptDownloads: true,
  });
  const page = await context.newPage();
  const allowed = new Set(sc.allow_http || []);
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const t = m.text();
    const http = /status of (\d{3})/.exec(t);
    if (m.type() === 'error' && http && allowed.has(Number(http[1]))) return;
    // the provider's login page has no icon: its pages are not the console's
    if (/\/favicon\.ico$/.test(m.location().url) && !m.location().url.startsWith(sc.url.replace(/\/console\/$/, ''))) return;
    if (m.type() === 'warning' && !/Content.Security.Policy|Refused/i.test(t)) return;
    problems.push(`console ${m.type()}: ${t} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  await scenarios[sc.name](page);
  if (problems.length) throw new Error(problems.join('\n'));
  console.log(JSON.stringify(found));
} catch (e) {
  console.error(`${sc.name}: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
