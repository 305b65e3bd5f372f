// The api's operations page (services/api/ops/), run by services/api/tests/ops.rs
// against an api that watches a stack of two edges, one live session on each.

import { SOON, assert, eventually, newPage, screenshot, step } from "./lib.mjs";

/** A wrong key is refused; the right one shows both edges live, each with
 *  a session, and their charts. Saves `ops-live.png`. */
export async function opsLive(browser, base, { key, edges }) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await newPage(context, "ops");
  const response = await page.goto(new URL("/api/ops", base).href);
  assert(response.ok(), `GET /api/ops: ${response.status()}`);

  step("a wrong key");
  await page.fill("#api-key", "rk_not-the-key");
  await page.click("#key-form button");
  await page.locator("#status", { hasText: "refused (401)" }).waitFor({ timeout: SOON });
  assert(await page.locator("#board").isHidden(), "the board shows without a good key");

  step("the operator's key");
  await page.fill("#api-key", key);
  await page.click("#key-form button");
  const rows = () =>
    page.$$eval("#edges tbody tr", (trs) =>
      trs.map((tr) => ({
        edge: tr.dataset.edge,
        availability: tr.dataset.availability,
        sessions: Number(tr.querySelector(".sessions .value")?.textContent),
      })),
    );
  let seen = [];
  try {
    await eventually("both edges with a session", async () => {
      seen = await rows();
      return (
        seen.length === edges.length &&
        edges.every((url) => seen.some((r) => r.edge === url && r.sessions > 0 && r.availability !== "down"))
      );
    });
  } catch (err) {
    throw new Error(`${err.message}: rows ${JSON.stringify(seen)}`);
  }
  step(`edges: ${JSON.stringify(seen)}`);

  // A chart has a line once two snapshots came; a few, for the picture.
  await eventually("sessions charts with a line", async () =>
    page.$$eval(".sessions svg polyline", (lines) =>
      lines.length === 2 && lines.every((l) => (l.getAttribute("points") ?? "").split(" ").length >= 5),
    ),
  );
  const health = await page.$$eval("#health tbody tr", (trs) => trs.map((tr) => tr.textContent));
  assert(health.some((t) => t.startsWith("Redis") && t.includes("ok")), `Redis: ${health}`);
  assert(health.some((t) => t.startsWith("Store") && t.includes("ok")), `store: ${health}`);
  await page.locator("#lag tbody tr").first().waitFor({ timeout: SOON });
  assert((await page.locator("#key-form").isHidden()), "the key form stays");
  await screenshot(page, "ops-live.png");
  await context.close();
}
