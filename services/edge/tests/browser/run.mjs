// Runs one browser scenario against a running stack:
//
//   node run.mjs <scenario> <base url> <fixture json>
//
// Environment: RILL_CHROMIUM_BIN (Chromium to drive, headless),
// RILL_SCREENSHOTS (folder for the screenshots of a failed scenario).
// Exits 0 when the scenario passed, 1 when it failed (after saving a
// screenshot of every open page), 2 on bad arguments.
// services/edge/tests/browser.rs starts it and answers its `@rill` requests;
// services/api/tests/ops.rs runs the ops.mjs scenarios.

import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

import { closeInput, pages, step } from "./lib.mjs";
import * as clientScenarios from "./scenarios.mjs";
// The api's operations page (services/api/tests/ops.rs).
import * as opsScenarios from "./ops.mjs";

const scenarios = { ...clientScenarios, ...opsScenarios };

const [name, base, fixtureJson] = process.argv.slice(2);
const scenario = scenarios[name];
if (!scenario || !base || !fixtureJson) {
  console.error(`usage: node run.mjs <${Object.keys(scenarios).join("|")}> <base url> <fixture json>`);
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.RILL_CHROMIUM_BIN || "/usr/bin/chromium",
  headless: true,
  // Chromium's sandbox cannot start as root, which CI and these machines are.
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
});
let failed = false;
const started = Date.now();
try {
  step(`scenario ${name} against ${base} (Chromium ${browser.version()})`);
  await scenario(browser, base, JSON.parse(fixtureJson));
  step(`scenario ${name} passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (err) {
  failed = true;
  console.log(`scenario ${name} FAILED: ${err.stack || err}`);
  await screenshots(name);
} finally {
  closeInput();
  await browser.close();
}
process.exit(failed ? 1 : 0);

/** A screenshot of every page still open, and its status line. */
async function screenshots(name) {
  const dir = process.env.RILL_SCREENSHOTS || "browser-screenshots";
  mkdirSync(dir, { recursive: true });
  for (const [pageName, page] of pages) {
    if (page.isClosed()) continue;
    const file = path.resolve(dir, `${name}-${pageName}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
      const status = await page.locator("#status").textContent({ timeout: 1000 }).catch(() => "?");
      console.log(`screenshot of ${pageName} (status: ${status.replace(/\s+/g, " ").trim()}): ${file}`);
    } catch (err) {
      console.log(`no screenshot of ${pageName}: ${err.message}`);
    }
  }
}
