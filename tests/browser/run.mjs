// Drives Debian's Chromium with playwright-core for tests/browser.rs: opens the page URL given
// as the first argument, waits (bounded) until the page has run its steps, saves a screenshot to
// the second argument, and prints one JSON line: the page's results, the text it shows, and its
// console and errors (for a failing test's message). Exits non-zero only when the browser could
// not be driven; what the page's calls returned is for the Rust test to judge.
//
// Environment: BROWSER_TOOLS, the folder whose node_modules holds playwright-core (ES modules
// ignore NODE_PATH, so it is loaded with a require made for that folder); CHROMIUM, the browser.
import { createRequire } from 'node:module';
import path from 'node:path';

const [url, screenshot] = process.argv.slice(2);
const require = createRequire(path.join(process.env.BROWSER_TOOLS, 'package.json'));
const { chromium } = require('playwright-core');

// The flags that work on a closed network: without the background-networking ones Chromium
// keeps trying to reach Google's hosts. Playwright adds --headless and --no-sandbox (as root)
// itself, and a fresh profile directory.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
const log = [];
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 420 } });
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  // The gRPC-Web calls as the browser made them: their content type (text mode) and the CORS
  // header of the answer, without which the page could not have read it.
  const calls = [];
  page.on('response', async (r) => {
    if (r.request().method() !== 'POST') return;
    calls.push({ path: new URL(r.url()).pathname, status: r.status(),
      contentType: await r.request().headerValue('content-type'),
      allowOrigin: await r.headerValue('access-control-allow-origin') });
  });
  page.on('requestfailed', (r) => log.push(`request failed: ${r.method()} ${r.url().replace(/token=[^&]*/g, 'token=...')}: ${r.failure()?.errorText}`));
  await page.goto(url, { timeout: 30000 });
  let done = true;
  try {
    await page.waitForSelector('body[data-done]', { timeout: 45000 });
  } catch (e) {
    done = false;
    log.push(`the page did not finish: ${e.message.split('\n')[0]}`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  const results = await page.evaluate(() => window.results ?? null);
  const text = await page.evaluate(() => document.getElementById('out').textContent);
  console.log(JSON.stringify({ done, results, text, calls, log }));
} finally {
  await browser.close();
}
