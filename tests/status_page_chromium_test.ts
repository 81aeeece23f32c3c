/**
 * The manager's status page in a real browser (headless Chromium): it renders (a screenshot),
 * lists every node after load, and — the same page instance, never reloaded — shows a killed
 * server as fault once the manager notices. Skips, saying what to install, without Chromium.
 */
import assert from "node:assert/strict";
import { formatAddress } from "../core/address.ts";
import { dumpDom, findChromium, LivePage, screenshot } from "./helpers/chromium.ts";
import { TestCluster, waitFor } from "./helpers/cluster.ts";

const browser = findChromium();
if (!browser) {
  console.log("status_page_chromium_test: skipped, no chromium (apt-get install chromium)");
}

/** The page's rows as "node state-cell-text" lines, read from the live DOM. */
const ROWS_EXPRESSION = `[...document.querySelectorAll("#nodes tr")]
  .map((row) => row.cells[0].textContent + " " + row.cells[2].textContent)
  .join("\\n")`;

Deno.test({
  name: "the status page renders, lists every node and turns a killed server fault live",
  ignore: !browser,
  async fn() {
    const cluster = await TestCluster.start({ servers: 3, metrics: true });
    const outputDir = await Deno.makeTempDir({ prefix: "kumo-status-page-" });
    let page: LivePage | undefined;
    try {
      const url = `http://${formatAddress(cluster.manager.metricsAddress!)}/`;
      const nodes = cluster.servers.map((s) => formatAddress(s.address));

      const png = `${outputDir}/status.png`;
      await screenshot(browser!, url, png);
      const image = await Deno.readFile(png);
      assert.ok(image.length > 1000, `screenshot of ${image.length} bytes`);
      assert.deepEqual([...image.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

      const dom = await dumpDom(browser!, url);
      for (const node of nodes) {
        assert.match(dom, new RegExp(`<tr data-node="${node}" data-state="active">`), dom);
      }

      page = await LivePage.open(browser!, url);
      const live = page;
      const rows = async () => String(await live.evaluate(ROWS_EXPRESSION));
      let last = "";
      await waitFor("the live page to list every node active", async () => {
        last = await rows();
        return nodes.every((node) => last.includes(`${node} active`));
      }, { state: () => `page rows:\n${last}` });
      // Marks this page instance: a reload would lose the mark.
      await page.evaluate("window.kumoSamePage = 1");

      const victim = cluster.servers[2];
      const node = formatAddress(victim.address);
      await cluster.kill(victim);
      await waitFor(`the same page to show ${node} fault`, async () => {
        last = await rows();
        return last.includes(`${node} fault`);
      }, { timeoutMs: 20_000, state: () => `page rows:\n${last}\n${cluster.describe()}` });
      assert.equal(await page.evaluate("window.kumoSamePage"), 1, "the page was reloaded");
      for (const other of nodes.filter((n) => n !== node)) {
        assert.ok(last.includes(`${other} active`), last);
      }
    } finally {
      await page?.close();
      await cluster.close();
      await Deno.remove(outputDir, { recursive: true }).catch(() => {});
    }
  },
});
