/**
 * Page tests that need the durable-history and auth features (`--data`, the
 * `history` request, `--jwt-secret` and `/auth`). Each is skipped, with the
 * reason printed, while main.ts does not list the flag it needs; they run by
 * themselves once it does.
 */
import assert from "node:assert/strict";
import type { Page } from "./deps.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  ARTIFACTS,
  haveChromium,
  live,
  openChat,
  say,
  serverHasFlag,
  shows,
  texts,
  withChromium,
} from "./browser_helpers.ts";
import {
  connect,
  freePort,
  numbered,
  post,
  type ServerProcess,
  spawnServer,
  until,
} from "./helpers.ts";

const hasData = haveChromium && await serverHasFlag("--data");
const hasJwt = haveChromium && await serverHasFlag("--jwt-secret");
if (haveChromium && !hasData) {
  console.warn(
    "page tests of scrollback and of a restart with --data skipped: " +
      "main.ts has no --data flag yet (durable history, issue 12)",
  );
}
if (haveChromium && !hasJwt) {
  console.warn(
    "page tests of sign-in skipped: main.ts has no --jwt-secret flag yet " +
      "(auth, issue 10)",
  );
}

/** Permissions of a server with a data file. */
const SERVER_PERMISSIONS = ["--allow-all"];

/** How long a post may take to come back from a subprocess server. */
const SLOW_MS = 30_000;

/** Runs `fn` with a temporary directory, removed afterwards. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-page-data-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether the server answers a `history` request (else `unknown_type`). */
async function answersHistory(srv: ServerProcess): Promise<boolean> {
  const s = await connect(`${srv.ws}/ws?room=probe`, JSON_SUBPROTOCOL);
  try {
    await s.waitLines(1);
    s.send(JSON.stringify({ type: "history", limit: 1 }));
    // Our own `join` comes right after the welcome, so the answer is not
    // necessarily the second line.
    const answered = () =>
      s.messages.find((m) => m.type === "history" || m.type === "error");
    await s.waitFor(() => answered() !== undefined, "an answer to history");
    return answered()?.type === "history";
  } finally {
    await s.close();
  }
}

Deno.test({
  name: "browser: scrollback reaches the start of a room of 300 messages",
  ignore: !hasData,
  async fn() {
    await withTempDir(async (dir) => {
      const srv = await spawnServer([
        "--data",
        `${dir}/hubbub.db`,
        "--history",
        "50",
        "--rate-limit",
        "0",
      ], SERVER_PERMISSIONS);
      try {
        assert.ok(
          await answersHistory(srv),
          "a server with --data must answer the history request",
        );
        const writer = await connect(
          `${srv.ws}/ws?room=big&name=writer`,
          JSON_SUBPROTOCOL,
        );
        const all = numbered("old ", 1, 300);
        await post(writer, all, SLOW_MS);
        await withChromium(async (browser) => {
          const page = await openChat(browser, srv.http, "reader", "big");
          await shows(page, "old 300");
          assert.ok((await texts(page)).length < 300, "the welcome is a page");
          await until(
            async () => {
              await page.evaluate("log.scrollTop = 0");
              return await page.locator("#top.start").count() > 0;
            },
            "the beginning of the room",
            30_000,
          );
          assert.equal(
            await page.locator("#topText").innerText(),
            "This is the beginning of big.",
          );
          assert.deepEqual(await texts(page), all);
          await page.screenshot({
            path: `${ARTIFACTS}chat-scrollback-start.png`,
          });
        });
        await writer.close();
      } finally {
        await srv.stop();
      }
    });
  },
});

Deno.test({
  name:
    "browser: kill -9 and restart with --data: both pages come back and show every message once",
  ignore: !hasData,
  async fn() {
    await withTempDir(async (dir) => {
      const port = String(freePort());
      const args = ["--port", port, "--data", `${dir}/hubbub.db`];
      let srv = await spawnServer(args, SERVER_PERMISSIONS);
      try {
        await withChromium(async (browser) => {
          const alice = await openChat(browser, srv.http, "alice", "r");
          const bob = await openChat(browser, srv.http, "bob", "r");
          const writer = await connect(
            `${srv.ws}/ws?room=r&name=w`,
            JSON_SUBPROTOCOL,
          );
          await post(writer, numbered("before ", 1, 3), SLOW_MS);
          await shows(alice, "before 3");
          await shows(bob, "before 3");
          await srv.stop("SIGKILL");
          await writer.closed;
          await alice.locator("#state[data-state=reconnecting]").waitFor();
          srv = await spawnServer(args, SERVER_PERMISSIONS);
          const again = await connect(
            `${srv.ws}/ws?room=r&name=w`,
            JSON_SUBPROTOCOL,
          );
          await post(again, ["after 1"], SLOW_MS);
          await Promise.all([live(alice), live(bob)]);
          await say(alice, "after 2");
          const expected = [...numbered("before ", 1, 3), "after 1", "after 2"];
          for (const page of [alice, bob]) {
            await shows(page, "after 2");
            assert.deepEqual(await texts(page), expected);
            assert.equal(
              await page.locator("#log .notice.alert").count(),
              0,
              "nothing is missing, so no gap is reported",
            );
          }
          await alice.screenshot({ path: `${ARTIFACTS}chat-restart-data.png` });
          await again.close();
        });
      } finally {
        await srv.stop();
      }
    });
  },
});

// ---- sign-in ----

const SECRET = "page-test-secret-0123456789abcdef0123";

function base64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string"
    ? new TextEncoder().encode(data)
    : data;
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** An HS256 JWT for `claims`, signed with {@link SECRET}. */
async function signToken(claims: Record<string, unknown>): Promise<string> {
  const head = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = base64url(JSON.stringify(claims));
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = await crypto.subtle.sign(
    "HMAC",
    key,
    new TextEncoder().encode(`${head}.${body}`),
  );
  return `${head}.${body}.${base64url(new Uint8Array(sig))}`;
}

/** Runs `fn` with a server that has auth, and a browser. */
async function withAuthServer(
  fn: (srv: ServerProcess, page: () => Promise<Page>) => Promise<void>,
): Promise<void> {
  const srv = await spawnServer(["--jwt-secret", SECRET], SERVER_PERMISSIONS);
  try {
    await withChromium((browser) => fn(srv, () => browser.newPage()));
  } finally {
    await srv.stop();
  }
}

Deno.test({
  name: "browser: a page with a valid #token= chats under the token's name",
  ignore: !hasJwt,
  async fn() {
    await withAuthServer(async (srv, newPage) => {
      const now = Math.floor(Date.now() / 1000);
      const token = await signToken({
        sub: "u1",
        name: "alice",
        exp: now + 600,
      });
      const page = await newPage();
      await page.goto(`${srv.http}/?room=lobby#token=${token}`);
      await live(page);
      await page.locator("#name", { hasText: "alice" }).waitFor();
      // The token left the address bar, and stays for this tab.
      assert.equal(new URL(page.url()).hash, "");
      assert.equal(
        await page.evaluate("sessionStorage.getItem('hubbub.token')"),
        token,
      );
      const bobToken = await signToken({
        sub: "u2",
        name: "bob",
        exp: now + 600,
      });
      const bob = await connect(
        `${srv.ws}/ws?room=lobby&token=${bobToken}`,
        JSON_SUBPROTOCOL,
      );
      await say(page, "signed in");
      await bob.waitFor(
        () => bob.messages.some((m) => m.text === "signed in"),
        "the page's message",
      );
      const got = bob.messages.find((m) => m.text === "signed in")!;
      assert.equal(got.from, "alice");
      // The name comes from the token: a rename is refused, and shown.
      await say(page, "/nick mallory");
      await page.locator("#log .notice.alert", { hasText: "error" }).waitFor();
      await page.screenshot({ path: `${ARTIFACTS}chat-signed-in.png` });
      await bob.close();
    });
  },
});

Deno.test({
  name: "browser: an expired token shows the refusal, not reconnecting forever",
  ignore: !hasJwt,
  async fn() {
    await withAuthServer(async (srv, newPage) => {
      const check = await fetch(`${srv.http}/auth?room=lobby`);
      await check.body?.cancel();
      if (check.status === 404) {
        console.warn("skipped: the server has --jwt-secret but no /auth yet");
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const token = await signToken({
        sub: "u1",
        name: "alice",
        exp: now - 60,
      });
      const page = await newPage();
      await page.goto(`${srv.http}/?room=lobby#token=${token}`);
      const state = page.locator("#state[data-state=refused]");
      await state.waitFor();
      assert.match(
        await state.innerText(),
        /^your sign-in was refused: .*expired/,
      );
      await page.screenshot({ path: `${ARTIFACTS}chat-sign-in-refused.png` });
    });
  },
});
