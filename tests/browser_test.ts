import assert from "node:assert/strict";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { LARGE_ROOM } from "../hub.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  closeAll,
  connect,
  connectMany,
  startServer,
  type TestServer,
  type TestSocket,
} from "./helpers.ts";
import type { HubbubOptions } from "../mod.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url).pathname;
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!haveChromium) {
  console.warn(
    `browser tests skipped: no ${CHROMIUM} (bash .ci/run installs it)`,
  );
}

/** Runs `fn` with a server and a fresh headless Chromium, then removes both. */
async function withBrowser(
  options: HubbubOptions,
  fn: (browser: BrowserContext, srv: TestServer) => Promise<void>,
): Promise<void> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const userDataDir = await Deno.makeTempDir({ prefix: "hubbub-chromium-" });
  const srv = await startServer(options);
  const browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    await fn(browser, srv);
  } finally {
    await browser.close();
    await srv.close();
    await Deno.remove(userDataDir, { recursive: true });
  }
}

async function openChat(
  browser: BrowserContext,
  srv: TestServer,
  name: string,
): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${srv.http}/?room=lobby&name=${name}&autojoin`);
  await page.locator("#state[data-state=live]").waitFor();
  return page;
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

function texts(page: Page): Promise<string[]> {
  return page.locator("#log .msg .text").allTextContents();
}

Deno.test({
  name:
    "browser: two pages chat and the presence list follows joins and leaves",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const alice = await openChat(browser, srv, "alice");
      const bob = await openChat(browser, srv, "bob");
      await alice.locator("#members li", { hasText: "bob" }).waitFor();
      await say(alice, "hello bob");
      await bob.locator("#log .msg", { hasText: "hello bob" }).waitFor();
      await say(bob, "hi alice");
      await alice.locator("#log .msg", { hasText: "hi alice" }).waitFor();
      assert.deepEqual(await alice.locator("#members li").allTextContents(), [
        "alice",
        "bob",
      ]);
      assert.deepEqual(await texts(alice), ["hello bob", "hi alice"]);
      await alice.screenshot({ path: `${ARTIFACTS}chat-two-pages.png` });
      // A phone-sized window: the list is hidden, the header keeps the count.
      await bob.setViewportSize({ width: 390, height: 700 });
      assert.match(
        String(await bob.locator("#who").textContent()),
        /bob in lobby, 2 here/,
      );
      await bob.screenshot({ path: `${ARTIFACTS}chat-phone.png` });
      await bob.close();
      await alice.locator("#log .notice", { hasText: "bob left" }).waitFor();
      assert.deepEqual(await alice.locator("#members li").allTextContents(), [
        "alice",
      ]);
    });
  },
});

Deno.test({
  name: "browser: markup in a message shows as text and runs nothing",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const alice = await openChat(browser, srv, "alice");
      let dialogs = 0;
      alice.on("dialog", (d) => {
        dialogs++;
        d.dismiss();
      });
      const evil =
        `<img src=x onerror=alert(1)><script>window.pwned=1</script>`;
      const mallory = await connect(
        `${srv.ws}/ws?name=%3Cb%3Emallory`,
        JSON_SUBPROTOCOL,
      );
      mallory.send(JSON.stringify({ type: "message", text: evil }));
      await alice.locator("#log .msg", { hasText: "onerror" }).waitFor();
      assert.deepEqual(await texts(alice), [evil]);
      assert.equal(
        await alice.locator("#log img, #log script, #log b").count(),
        0,
      );
      assert.equal(
        await alice.locator("#log .from").first().textContent(),
        "<b>mallory",
      );
      assert.equal(await alice.evaluate(() => "pwned" in globalThis), false);
      assert.equal(dialogs, 0);
      await alice.screenshot({ path: `${ARTIFACTS}chat-markup-as-text.png` });
      await mallory.close();
    });
  },
});

Deno.test({
  name:
    "browser: a page dropped by the server reconnects and shows what it missed, once",
  ignore: !haveChromium,
  async fn() {
    // The server drops the page for flooding (rate limit, close 1008).
    await withBrowser({ rateLimit: 1, rateBurst: 2 }, async (browser, srv) => {
      const other: TestSocket = await connect(
        `${srv.ws}/ws?name=other`,
        JSON_SUBPROTOCOL,
      );
      const page = await openChat(browser, srv, "pat");
      other.send(JSON.stringify({ type: "message", text: "before" }));
      await page.locator("#log .msg", { hasText: "before" }).waitFor();
      // Two accepted, the third refused with an error, the fifth closes.
      // (A string, so it sees the page script's top-level `chat` binding.)
      await page.evaluate(`for (let i = 0; i < 5; i++) {
        chat.socket.send(JSON.stringify({ type: "message", text: "flood " + i }));
      }`);
      await page.locator("#state[data-state=reconnecting]").waitFor();
      await page.screenshot({ path: `${ARTIFACTS}chat-reconnecting.png` });
      // Sent while the page is away; the rate limit allows one per second,
      // so these come from separate connections.
      const missed = ["missed 1", "missed 2", "missed 3"];
      for (const text of missed) {
        const s = await connect(`${srv.ws}/ws?name=s`, JSON_SUBPROTOCOL);
        s.send(JSON.stringify({ type: "message", text }));
        await s.waitFor(() => s.lines.some((l) => l.includes(text)), text);
        await s.close();
      }
      await page.locator("#state[data-state=live]").waitFor();
      await page.locator("#log .msg", { hasText: "missed 3" }).waitFor();
      const s = await connect(`${srv.ws}/ws?name=s`, JSON_SUBPROTOCOL);
      s.send(JSON.stringify({ type: "message", text: "after" }));
      await page.locator("#log .msg", { hasText: "after" }).waitFor();
      await s.close();
      assert.deepEqual(await texts(page), [
        "before",
        "flood 0",
        "flood 1",
        ...missed,
        "after",
      ]);
      await page.screenshot({ path: `${ARTIFACTS}chat-after-reconnect.png` });
      await other.close();
    });
  },
});

Deno.test({
  name:
    "browser: in a room over LARGE_ROOM members the list says how many it leaves out",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({ maxConnections: 1000 }, async (browser, srv) => {
      const crowd = await connectMany(
        `${srv.ws}/ws?room=lobby`,
        LARGE_ROOM + 1,
      );
      try {
        const page = await openChat(browser, srv, "zoe");
        const here = LARGE_ROOM + 2;
        await page.locator("#members li.more", {
          hasText: `and ${here - 1} more`,
        }).waitFor();
        assert.deepEqual(await page.locator("#members li").allTextContents(), [
          "zoe",
          `and ${here - 1} more`,
        ]);
        assert.match(
          await page.locator("#who").innerText(),
          new RegExp(`${here} here`),
        );
        await page.screenshot({ path: `${ARTIFACTS}chat-large-room.png` });
      } finally {
        await closeAll(crowd);
      }
    });
  },
});
