// Drives the web console in Debian's Chromium (playwright-core) for tests/console_browser.rs,
// against the real binary, in one browser session: the login (a wrong password first), a token
// issued on the Applications page, the token's instance in Connections, its records in Explore
// by level and text (details and context), a new record in the live tail (and one held while it
// is paused), the Server page, the token revoked, the logout. Screenshots of each page go to
// $SCREENSHOTS/<page>.png at 1280x800.
//
// What only the Rust test can do (connect with the native client, send a record, see a
// connection refused) it is asked on stdout, one JSON line `{"ask": ...}`, and it answers on
// stdin, one JSON line. The last line on stdout is `{"done": ..., "seen": {...}, "log": [...]}`:
// what the pages showed, for the Rust test to judge. Exits non-zero only when the browser could
// not be driven.
//
// Environment: BROWSER_TOOLS (the folder whose node_modules holds playwright-core), CHROMIUM,
// CONSOLE_URL (http://127.0.0.1:PORT), CONSOLE_PASSWORD, SCREENSHOTS.
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(path.join(process.env.BROWSER_TOOLS, 'package.json'));
const { chromium } = require('playwright-core');
const base = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOTS;
// Long enough for the Connections page's 2 s refresh and a slow machine; the Rust test has
// its own, longer, deadline for the whole run.
const WAIT = 15000;

// The Rust side of the conversation: one question out, one answer in.
const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(question) {
  process.stdout.write(`${JSON.stringify({ ask: question })}\n`);
  const { value, done } = await answers.next();
  if (done) throw new Error(`no answer to ${JSON.stringify(question)}`);
  return JSON.parse(value);
}

const seen = {};
const log = [];
let step = 'start';
let done = false;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
// Every request the console makes must go to its own origin.
page.on('request', (r) => {
  if (!r.url().startsWith(base) && !r.url().startsWith('data:')) log.push(`request elsewhere: ${r.url()}`);
});

const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
const text = (selector) => page.locator(selector).innerText({ timeout: WAIT });

try {
  step = 'the app page without a session goes to the login page';
  await page.goto(`${base}/`);
  await page.waitForURL(/\/login/, { timeout: WAIT });
  seen.redirected_to = new URL(page.url()).pathname;

  step = 'a wrong password is refused';
  await page.fill('#password', `${process.env.CONSOLE_PASSWORD}-wrong`);
  await page.click('#login button[type=submit]');
  await page.locator('#message').waitFor({ state: 'visible', timeout: WAIT });
  seen.wrong_password = await text('#message');
  seen.after_wrong_password = new URL(page.url()).pathname;
  await shot('login');

  step = 'the right password opens the console';
  await page.fill('#password', process.env.CONSOLE_PASSWORD);
  await page.click('#login button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/', { timeout: WAIT });
  await page.locator('#view[data-page]').waitFor({ timeout: WAIT });
  seen.cookie = (await page.context().cookies()).find((c) => c.name === 'logmill_session') ?? null;

  step = 'a token is issued';
  await page.goto(`${base}/#/tokens`);
  await page.fill('#token-app', 'shop');
  await page.click('#issue button[type=submit]');
  const token = await page.locator('#new-token').inputValue({ timeout: WAIT });
  seen.token_snippets = await text('#issued');
  const row = page.locator('#tokens tr[data-jti]', { hasText: 'shop' }).first();
  await row.waitFor({ timeout: WAIT });
  seen.jti = await row.getAttribute('data-jti');
  seen.token_row = await row.innerText();
  await shot('tokens');

  step = 'the native client connects with the token';
  seen.connected = await ask({ connect: token });

  step = 'the instance shows in Connections';
  await page.goto(`${base}/#/connections`);
  const instance = page.locator('#connections tr[data-app="shop"][data-instance="console-test"]');
  await instance.waitFor({ timeout: WAIT });
  // Records/s needs two readings (2 s apart): the row's eighth cell, no longer "…".
  await page.waitForFunction(
    () => document.querySelector('#connections tr[data-instance="console-test"] td:nth-child(8)')?.textContent !== '…',
    null, { timeout: WAIT });
  seen.connection_row = await instance.innerText();
  await shot('connections');

  step = 'Explore shows the last hours';
  await page.goto(`${base}/#/explore?since=2h`);
  await page.locator('#histogram svg').waitFor({ timeout: WAIT });
  await page.locator('#results > li').nth(20).waitFor({ timeout: WAIT });
  seen.overview_levels = await page.locator('#levels li').allInnerTexts();
  await shot('explore');

  step = 'scrolling to the end of the results loads the next page';
  seen.first_page = await page.locator('#results > li').count();
  await page.locator('.sentinel').scrollIntoViewIfNeeded();
  await page.waitForFunction((n) => document.querySelectorAll('#results > li').length > n, seen.first_page, { timeout: WAIT });
  seen.scrolled_seqs = await page.locator('#results > li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.seq)));

  step = 'Explore finds the records by level and text';
  await page.goto(`${base}/#/explore?level=warning&q=PAYMENT&since=2h`);
  const results = page.locator('#results > li');
  await page.locator('#results > li', { hasText: 'payment failed' }).waitFor({ timeout: WAIT });
  await page.locator('#levels li[data-level="error"]').waitFor({ timeout: WAIT });
  seen.explore_results = await results.allInnerTexts();
  seen.explore_levels = await page.locator('#levels li').allInnerTexts();
  seen.explore_level_field = await page.locator('#f-level').inputValue();
  seen.explore_text_field = await page.locator('#f-q').inputValue();

  step = 'a record opens into its details and context';
  await page.locator('#results > li', { hasText: 'payment failed' }).locator('.line').click();
  seen.details = await text('.details .fields');
  seen.raw = await text('.details .raw');
  await page.locator('.details button', { hasText: 'before and after' }).click();
  await page.locator('.context li[aria-current="true"]').waitFor({ timeout: WAIT });
  seen.context = await page.locator('.context li').allInnerTexts();
  seen.context_current = await text('.context li[aria-current="true"]');
  // The record at the top of the window, its details and context below it.
  await page.locator('#results > li', { hasText: 'payment failed' }).evaluate((li) => li.scrollIntoView());
  await shot('explore-record');

  step = 'the live tail shows a new record';
  await page.goto(`${base}/#/explore?q=payment`);
  await page.locator('#results > li').first().waitFor({ timeout: WAIT });
  await page.click('#tail');
  await page.locator('#tail-state', { hasText: 'live' }).waitFor({ timeout: WAIT });
  seen.sent_live = await ask({ send: 'payment retried for order 43', level: 'warning' });
  await page.locator('#results > li.new', { hasText: 'payment retried for order 43' }).waitFor({ timeout: WAIT });
  seen.tail_first = await page.locator('#results > li').first().innerText();

  step = 'a paused tail holds a record until resumed';
  await page.click('#pause');
  seen.sent_paused = await ask({ send: 'payment settled for order 43', level: 'info' });
  await page.locator('#tail-state', { hasText: '1 new record waiting' }).waitFor({ timeout: WAIT });
  seen.while_paused = await page.locator('#results > li', { hasText: 'payment settled' }).count();
  await page.click('#pause');
  await page.locator('#results > li', { hasText: 'payment settled for order 43' }).waitFor({ timeout: WAIT });
  seen.tail_after_resume = await page.locator('#results > li').first().innerText();
  await shot('explore-tail');
  await page.click('#tail');

  step = 'the Server page shows the bucket';
  await page.goto(`${base}/#/server`);
  await page.locator('#buckets tr', { hasText: 'shop' }).waitFor({ timeout: WAIT });
  seen.server_health = await text('.health');
  seen.server_buckets = await page.locator('#buckets tbody tr').allInnerTexts();
  await shot('server');

  step = 'the token is revoked';
  await page.goto(`${base}/#/tokens`);
  const revoke = page.locator(`#tokens tr[data-jti="${seen.jti}"] button`);
  await revoke.click();
  await revoke.click();
  await page.locator(`#tokens tr[data-jti="${seen.jti}"]`, { hasText: 'revoked' }).waitFor({ timeout: WAIT });
  seen.revoked_row = await page.locator(`#tokens tr[data-jti="${seen.jti}"]`).innerText();
  seen.reconnected = await ask({ connect_again: token });

  step = 'logging out ends the session';
  await page.click('#logout');
  await page.waitForURL(/\/login/, { timeout: WAIT });
  seen.after_logout = new URL(page.url()).pathname;
  seen.api_after_logout = await page.evaluate(async () => (await fetch('/api/connections')).status);
  await page.goto(`${base}/#/explore`);
  await page.waitForURL(/\/login/, { timeout: WAIT });
  seen.page_after_logout = new URL(page.url()).pathname;
  done = true;
} catch (e) {
  log.push(`failed at "${step}": ${e.message.split('\n')[0]}`);
  await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify({ done, step, seen, log })}\n`);
process.exit(0);
