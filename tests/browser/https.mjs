// The console over https in Debian's Chromium (playwright-core), for tests/tls.rs: one
// browser session, as console.mjs runs: the login page, the login, the console's first page,
// and a fetch of /healthz from it, all on the TLS gRPC port. Chromium trusts the test's
// certificate through --ignore-certificate-errors-spki-list=<the SHA-256 of its key>, and
// nothing else: no certificate error is ignored wholesale.
//
// Environment: BROWSER_TOOLS, CHROMIUM (as console.mjs), CONSOLE_URL (https://localhost:PORT),
// CONSOLE_PASSWORD, SPKI (base64 SHA-256 of the server key's SubjectPublicKeyInfo). Prints one
// JSON line: {"seen": {...}, "log": [...]} for the Rust test to judge; exits non-zero only when
// the browser could not be driven.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.BROWSER_TOOLS, 'package.json'));
const { chromium } = require('playwright-core');
const base = process.env.CONSOLE_URL;
const WAIT = 15000;
const seen = {};
const log = [];
let step = 'start';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${process.env.SPKI}`],
  timeout: 60000,
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => log.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  step = 'the login page over https';
  const response = await page.goto(`${base}/login`, { timeout: WAIT });
  seen.login_status = response.status();
  seen.protocol = new URL(page.url()).protocol;
  seen.security = (await response.securityDetails())?.protocol ?? null;
  await page.locator('#password').waitFor({ timeout: WAIT });

  step = 'the login';
  await page.fill('#password', process.env.CONSOLE_PASSWORD);
  await page.click('#login button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/', { timeout: WAIT });
  await page.locator('#view[data-page]').waitFor({ timeout: WAIT });
  seen.page = await page.locator('#view').getAttribute('data-page');

  step = 'a fetch from the page';
  seen.healthz = await page.evaluate(async () => (await fetch('/healthz')).text());
  step = 'done';
} catch (e) {
  log.push(`failed at "${step}": ${e.message}`);
} finally {
  seen.step = step;
  await browser.close();
}
process.stdout.write(`${JSON.stringify({ seen, log })}\n`);
