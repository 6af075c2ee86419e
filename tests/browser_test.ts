import assert from "node:assert/strict";
import type { BrowserContext, Page } from "./deps.ts";
import { LARGE_ROOM } from "../hub.ts";
import { createHubbub, type Hubbub, type HubbubOptions } from "../mod.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  ARTIFACTS,
  axeViolations,
  haveChromium,
  live,
  members,
  openChat,
  openPage,
  say,
  shows,
  texts,
  withBrowser,
  withChromium,
} from "./browser_helpers.ts";
import {
  closeAll,
  connect,
  connectMany,
  numbered,
  post,
  serveLocal,
  type TestSocket,
  until,
} from "./helpers.ts";

/** Whether the page's message list is scrolled to its end. */
function atBottom(page: Page): Promise<boolean> {
  return page.evaluate(
    "log.scrollHeight - log.scrollTop - log.clientHeight < 2",
  ) as Promise<boolean>;
}

Deno.test({
  name:
    "browser: two pages are in the lobby with no click, chat, and see presence",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const notFound: string[] = [];
      browser.on("response", (res) => {
        if (res.status() === 404) notFound.push(res.url());
      });
      // The page lives within its CSP: nothing it does is blocked.
      const blocked: string[] = [];
      browser.on("console", (msg) => {
        if (/Content.Security.Policy/i.test(msg.text())) {
          blocked.push(msg.text());
        }
      });
      const first = await openPage(browser, srv.http);
      const second = await openPage(browser, srv.http);
      // A guest name from the server, and the address is the room's link.
      const name1 = String(await first.locator("#name").textContent());
      const name2 = String(await second.locator("#name").textContent());
      assert.match(name1, /^guest-\d+$/);
      assert.match(name2, /^guest-\d+$/);
      assert.equal(new URL(first.url()).search, "?room=lobby");
      await first.locator("#members li", { hasText: name2 }).waitFor();
      await say(first, "hello from the first window");
      await shows(second, "hello from the first window");
      await say(second, "and back");
      await shows(first, "and back");
      assert.deepEqual(await texts(first), [
        "hello from the first window",
        "and back",
      ]);
      assert.deepEqual(await members(first), [name1, name2].sort());
      assert.equal(await first.title(), "lobby · hubbub");
      assert.equal(
        await first.locator("#top").innerText(),
        "This is the beginning of lobby.",
      );
      await first.screenshot({ path: `${ARTIFACTS}chat-two-pages.png` });
      // 320 px wide: the member list gives way, the header keeps the count
      // and the connection state.
      await second.setViewportSize({ width: 320, height: 640 });
      assert.equal(await second.locator("#who").innerText(), "2 here");
      assert.ok(await second.locator("#state").isVisible());
      const box = await second.locator("#send button").boundingBox();
      assert.ok(box && box.x + box.width <= 320, JSON.stringify(box));
      await second.screenshot({ path: `${ARTIFACTS}chat-320.png` });
      // The count opens the member list over the chat.
      assert.ok(await second.locator("#details").isHidden());
      await second.click("#who");
      assert.deepEqual(
        await second.locator("#members li:visible").allTextContents(),
        [name1, name2].sort(),
      );
      await second.screenshot({ path: `${ARTIFACTS}chat-320-members.png` });
      await second.press("#details a", "Escape");
      assert.ok(await second.locator("#details").isHidden());
      await second.emulateMedia({ colorScheme: "dark" });
      await second.screenshot({ path: `${ARTIFACTS}chat-320-dark.png` });
      await first.emulateMedia({ colorScheme: "dark" });
      await first.screenshot({ path: `${ARTIFACTS}chat-dark.png` });
      await second.close();
      await first.locator("#log .notice", { hasText: `${name2} left` })
        .waitFor();
      assert.deepEqual(await members(first), [name1]);
      // The icon is served, so no page load logs a 404.
      const icon = await first.evaluate(
        "fetch('favicon.ico').then((r) => r.status)",
      );
      assert.equal(icon, 200);
      assert.deepEqual(notFound, []);
      assert.deepEqual(blocked, []);
    });
  },
});

Deno.test({
  name: "browser: markup in a message shows as text and runs nothing",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const alice = await openChat(browser, srv.http, "alice");
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
      await shows(alice, "onerror");
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
    "browser: a page scrolled up does not jump; a button offers the new messages",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const writer = await connect(`${srv.ws}/ws?name=wren`, JSON_SUBPROTOCOL);
      await post(writer, numbered("line ", 1, 60));
      const reader = await openChat(browser, srv.http, "reader");
      const follower = await openChat(browser, srv.http, "follower");
      await shows(reader, "line 60");
      assert.ok(await atBottom(reader), "a new page starts at the newest");
      await reader.evaluate("log.scrollTop = 0");
      await post(writer, ["while you read"]);
      await shows(reader, "while you read");
      await shows(follower, "while you read");
      assert.equal(await reader.evaluate("log.scrollTop"), 0);
      assert.equal(
        await reader.locator("#jump").innerText(),
        "1 new message ↓",
      );
      // The page that was at the bottom followed the new line.
      assert.ok(await atBottom(follower));
      assert.ok(await follower.locator("#jump").isHidden());
      await post(writer, ["and another"]);
      await reader.locator("#jump", { hasText: "2 new messages" }).waitFor();
      await reader.screenshot({ path: `${ARTIFACTS}chat-scrolled-up.png` });
      await reader.click("#jump");
      await until(() => atBottom(reader), "jump to the bottom");
      await reader.locator("#jump").waitFor({ state: "hidden" });
      assert.equal(
        (await texts(reader)).length,
        62,
        "every message exactly once",
      );
      await writer.close();
    });
  },
});

Deno.test({
  name:
    "browser: rename and room switch happen in place; presence and the URL follow",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const alice = await openChat(browser, srv.http, "alice");
      const bob = await openChat(browser, srv.http, "bob");
      await alice.evaluate("window.sameDocument = true");
      await say(bob, "hi in the lobby");
      await shows(alice, "hi in the lobby");

      // Rename by command.
      await say(bob, "/nick robert");
      await alice.locator("#members li", { hasText: "robert" }).waitFor();
      assert.deepEqual(await members(alice), ["alice", "robert"]);
      // Rename by clicking the name.
      await alice.click("#name");
      await alice.locator("#nameInput").fill("alicia");
      await alice.screenshot({ path: `${ARTIFACTS}chat-editing-name.png` });
      await alice.press("#nameInput", "Enter");
      await bob.locator("#members li", { hasText: "alicia" }).waitFor();
      assert.deepEqual(await members(bob), ["alicia", "robert"]);
      await alice.locator("#name", { hasText: "alicia" }).waitFor();

      // Switch room by command: new history and presence, no reload.
      const carol = await connect(
        `${srv.ws}/ws?room=kitchen&name=carol`,
        JSON_SUBPROTOCOL,
      );
      await post(carol, ["soup is on"]);
      await say(alice, "/join kitchen");
      await alice.waitForURL((u) => u.search === "?room=kitchen");
      await shows(alice, "soup is on");
      await alice.locator("#members li", { hasText: "carol" }).waitFor();
      assert.deepEqual(await members(alice), ["alicia", "carol"]);
      assert.deepEqual(await texts(alice), ["soup is on"]);
      await bob.locator("#log .notice", { hasText: "alicia left" }).waitFor();
      assert.deepEqual(await members(bob), ["robert"]);
      assert.equal(await alice.title(), "kitchen · hubbub");
      await say(alice, "smells good");
      await carol.waitFor(
        () => carol.lines.some((l) => l.includes("smells good")),
        "alice's message in the kitchen",
      );
      await alice.screenshot({ path: `${ARTIFACTS}chat-room-switched.png` });

      // Back with the room field; the recent rooms list both.
      await alice.fill("#room", "lobby");
      await alice.press("#room", "Enter");
      await alice.waitForURL((u) => u.search === "?room=lobby");
      await shows(alice, "hi in the lobby");
      await alice.locator("#members li", { hasText: "robert" }).waitFor();
      assert.deepEqual(await members(alice), ["alicia", "robert"]);
      assert.deepEqual(
        await alice.locator("#recent a").allTextContents(),
        ["lobby", "kitchen"],
      );
      // And with a recent room's link, still in place.
      await alice.click("#recent a >> text=kitchen");
      await alice.waitForURL((u) => u.search === "?room=kitchen");
      await shows(alice, "smells good");
      assert.equal(await alice.evaluate("window.sameDocument"), true);

      // A new tab of this browser asks for the last name chosen; while the
      // first tab holds it the server gives a suffixed one, and the page
      // says so.
      const tab = await openPage(browser, srv.http, "/?room=kitchen");
      await tab.locator("#name", { hasText: "alicia-2" }).waitFor();
      await tab.locator("#log .notice", { hasText: "is in use" }).waitFor();
      await tab.screenshot({ path: `${ARTIFACTS}chat-second-tab.png` });
      await carol.close();
    });
  },
});

Deno.test({
  name: "browser: while the tab is hidden the title counts unread messages",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const page = await openChat(browser, srv.http, "hidden");
      // Headless tabs are never hidden: the test says the page is.
      await page.evaluate(`
        Object.defineProperty(document, "hidden", {
          configurable: true, get: () => window.testHidden });
        window.testHidden = true;
        document.dispatchEvent(new Event("visibilitychange"));`);
      const s = await connect(`${srv.ws}/ws?name=sam`, JSON_SUBPROTOCOL);
      await post(s, ["one", "two"]);
      await shows(page, "two");
      assert.equal(await page.title(), "(2) lobby · hubbub");
      await page.evaluate(`window.testHidden = false;
        document.dispatchEvent(new Event("visibilitychange"));`);
      assert.equal(await page.title(), "lobby · hubbub");
      // New messages are announced to screen readers.
      assert.equal(await page.locator("#announce").textContent(), "sam: two");
      assert.equal(
        await page.locator("#announce").getAttribute("aria-live"),
        "polite",
      );
      await s.close();
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
      const page = await openChat(browser, srv.http, "pat");
      other.send(JSON.stringify({ type: "message", text: "before" }));
      await shows(page, "before");
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
      await live(page);
      await shows(page, "missed 3");
      const s = await connect(`${srv.ws}/ws?name=s`, JSON_SUBPROTOCOL);
      s.send(JSON.stringify({ type: "message", text: "after" }));
      await shows(page, "after");
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

/**
 * A server whose instance can be replaced (a restart on the same port) and
 * whose door can be held shut for browsers (handshakes with an Origin get
 * 503), so a test decides what happens while a page is away.
 */
interface SwitchableServer {
  http: string;
  ws: string;
  hubbub: Hubbub;
  /** Opens or shuts the door for browser handshakes. */
  admitBrowsers(open: boolean): void;
  /** Closes the instance (1001 to everyone) and starts a fresh one. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function startSwitchable(
  options: HubbubOptions,
): Promise<SwitchableServer> {
  let hubbub = createHubbub({ rateLimit: 0, ...options });
  let admit = true;
  const { server, port } = await serveLocal((req) => {
    const browser = req.headers.has("origin");
    if (!admit && browser && new URL(req.url).pathname === "/ws") {
      return new Response("held back by the test\n", { status: 503 });
    }
    return hubbub.handler(req);
  });
  return {
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    get hubbub() {
      return hubbub;
    },
    admitBrowsers(open) {
      admit = open;
    },
    async restart() {
      await hubbub.close(2000);
      hubbub = createHubbub({ rateLimit: 0, ...options });
    },
    async close() {
      await hubbub.close(2000);
      await server.shutdown();
    },
  };
}

/** Runs `fn` with a {@link startSwitchable} server and a fresh Chromium. */
async function withSwitchable(
  options: HubbubOptions,
  fn: (browser: BrowserContext, srv: SwitchableServer) => Promise<void>,
): Promise<void> {
  const srv = await startSwitchable(options);
  try {
    await withChromium((browser) => fn(browser, srv));
  } finally {
    await srv.close();
  }
}

Deno.test({
  name:
    "browser: after a reconnect the page says exactly which messages it lacks",
  ignore: !haveChromium,
  async fn() {
    await withSwitchable({ history: 5 }, async (browser, srv) => {
      const page = await openChat(browser, srv.http, "pat", "r");
      const writer = await connect(
        `${srv.ws}/ws?room=r&name=w`,
        JSON_SUBPROTOCOL,
      );
      await post(writer, numbered("m", 1, 3));
      await shows(page, "m3");
      srv.admitBrowsers(false);
      await page.evaluate("chat.socket.close()");
      await page.locator("#state[data-state=reconnecting]").waitFor();
      // Nine while away; the room keeps the last five (m8..m12).
      await post(writer, numbered("m", 4, 12));
      srv.admitBrowsers(true);
      await live(page);
      const gap = page.locator("#log .notice.alert");
      await gap.filter({ hasText: "no longer kept" }).waitFor();
      assert.equal(
        await gap.textContent(),
        "9 messages sent while you were away: 4 of them (#4–#7) are no " +
          "longer kept by the server and are missing here; the other 5 " +
          "are shown.",
      );
      assert.deepEqual(await texts(page), [
        ...numbered("m", 1, 3),
        ...numbered("m", 8, 12),
      ]);
      await page.screenshot({ path: `${ARTIFACTS}chat-gap.png` });
      await writer.close();
    });
  },
});

Deno.test({
  name:
    "browser: a restart that reset the room: the page says so, and what it lacks since",
  ignore: !haveChromium,
  async fn() {
    await withSwitchable({ history: 5 }, async (browser, srv) => {
      const page = await openChat(browser, srv.http, "pat", "r");
      const before = await connect(
        `${srv.ws}/ws?room=r&name=w`,
        JSON_SUBPROTOCOL,
      );
      await post(before, numbered("a", 1, 3));
      await shows(page, "a3");
      srv.admitBrowsers(false);
      await srv.restart();
      await page.locator("#state[data-state=reconnecting]").waitFor();
      await before.closed;
      // The new life of the room has moved past its start (b4..b8 kept)
      // before the page is back.
      const after = await connect(
        `${srv.ws}/ws?room=r&name=w`,
        JSON_SUBPROTOCOL,
      );
      await post(after, numbered("b", 1, 8));
      srv.admitBrowsers(true);
      await live(page);
      const lost = page.locator("#log .notice.alert", {
        hasText: "since the restart",
      });
      await lost.filter({ hasText: "no longer kept" }).waitFor();
      assert.equal(
        await lost.textContent(),
        "8 messages sent since the restart: 3 of them (#1–#3) are no " +
          "longer kept by the server and are missing here; the other 5 " +
          "are shown.",
      );
      await page.locator("#log .notice.alert", {
        hasText: "history started again",
      }).waitFor();
      assert.deepEqual(await texts(page), [
        ...numbered("a", 1, 3),
        ...numbered("b", 4, 8),
      ]);
      // The page had the room from its start; that has not changed.
      assert.equal(
        await page.locator("#topText").innerText(),
        "This is the beginning of r.",
      );
      await post(after, ["b9"]);
      await shows(page, "b9");
      assert.equal((await texts(page)).length, 9);
      await page.screenshot({ path: `${ARTIFACTS}chat-restart-reset.png` });
      await after.close();
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
        const page = await openChat(browser, srv.http, "zoe");
        const here = LARGE_ROOM + 2;
        await page.locator("#members li.more", {
          hasText: `and ${here - 1} more`,
        }).waitFor();
        assert.deepEqual(await members(page), ["zoe", `and ${here - 1} more`]);
        assert.equal(await page.locator("#who").innerText(), `${here} here`);
        await page.screenshot({ path: `${ARTIFACTS}chat-large-room.png` });
      } finally {
        await closeAll(crowd);
      }
    });
  },
});

Deno.test({
  name:
    "browser: axe-core finds no serious or critical problems, light and dark, wide and 320 px",
  ignore: !haveChromium,
  async fn() {
    await withBrowser({}, async (browser, srv) => {
      const alice = await openChat(browser, srv.http, "alice");
      const bob = await openChat(browser, srv.http, "bob");
      const writer = await connect(`${srv.ws}/ws?name=wren`, JSON_SUBPROTOCOL);
      await post(writer, numbered("a line to read ", 1, 40));
      await shows(alice, "a line to read 40");
      await say(alice, "my own line");
      await shows(bob, "my own line");
      // Scrolled up with the jump button showing, so it is checked too.
      await bob.evaluate("log.scrollTop = 0");
      await post(writer, ["news"]);
      await bob.locator("#jump").waitFor();
      const report: string[] = [];
      let bad = 0;
      for (const scheme of ["light", "dark"] as const) {
        for (const width of [1280, 320]) {
          await bob.emulateMedia({ colorScheme: scheme });
          await bob.setViewportSize({ width, height: 700 });
          const found = await axeViolations(bob);
          const counts: Record<string, number> = {};
          for (const v of found) counts[v.impact] = (counts[v.impact] ?? 0) + 1;
          report.push(
            `${scheme} ${width}px: ${found.length} violated rules ` +
              JSON.stringify(counts) +
              found.map((v) => ` ${v.id}(${v.impact}, ${v.nodes})`).join(""),
          );
          bad += found.filter((v) =>
            v.impact === "serious" || v.impact === "critical"
          ).length;
          if (width === 1280) {
            await bob.screenshot({
              path: `${ARTIFACTS}chat-axe-${scheme}.png`,
            });
          }
        }
      }
      console.log("axe-core:\n  " + report.join("\n  "));
      assert.equal(bad, 0, report.join("\n"));
      await writer.close();
    }, { bypassCSP: true });
  },
});
