// A real Chromium for tests/web/test_browser.py, driven by playwright-core: one JSON command
// a line on stdin, one JSON answer a line on stdout ({ok, value} or {ok: false, error}).
// Usage: node browser.js <playwright-core directory> <chromium executable>
"use strict";
const readline = require("readline");
const { chromium } = require(process.argv[2] + "/node_modules/playwright-core");

async function main() {
  const browser = await chromium.launch({
    executablePath: process.argv[3],
    // Root in CI containers: Chromium's own sandbox needs user namespaces it may not have.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const contexts = {};
  const pages = {};
  const errors = [];

  async function page(name, viewport) {
    if (!pages[name]) {
      contexts[name] = await browser.newContext({ viewport: viewport || { width: 1280, height: 900 } });
      pages[name] = await contexts[name].newPage();
      pages[name].on("console", (m) => { if (m.type() === "error") { errors.push(m.text()); } });
      pages[name].on("pageerror", (e) => errors.push(String(e)));
    }
    return pages[name];
  }

  const commands = {
    async goto(c) { const p = await page(c.page, c.viewport); const r = await p.goto(c.url); return { status: r ? r.status() : 0, url: p.url() }; },
    async click(c) { const p = await page(c.page); await p.click(c.selector); await p.waitForLoadState(); return p.url(); },
    async text(c) { return (await page(c.page)).locator(c.selector).allInnerTexts(); },
    async waitText(c) {
      const p = await page(c.page);
      await p.locator(c.selector, { hasText: c.text }).first().waitFor({ timeout: c.timeout || 10000 });
      return true;
    },
    async evaluate(c) { return (await page(c.page)).evaluate(c.expression); },
    async reload(c) { const p = await page(c.page); const r = await p.reload(); return r ? r.status() : 0; },
    async screenshot(c) { await (await page(c.page)).screenshot({ path: c.path, fullPage: !!c.full }); return c.path; },
    async errors() { return errors.splice(0); },
    async close() { await browser.close(); return true; },
  };

  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line);
    let answer;
    try {
      answer = { ok: true, value: await commands[command.op](command) };
    } catch (error) {
      answer = { ok: false, error: String(error && error.message || error) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
    if (command.op === "close") { break; }
  }
  process.exit(0);
}

main().catch((error) => { process.stderr.write(String(error && error.stack || error) + "\n"); process.exit(1); });
