/**
 * What a real browser makes of the token in `Sec-WebSocket-Protocol`: a
 * handshake offering only `bearer.<JWT>` fails in the browser (the server
 * selects none of the offered protocols, as it never echoes the token), so a
 * page offers `hubbub.v1` or the token-free `bearer` beside it; and the
 * page's same-origin `GET /auth` check works under the page's CSP.
 */

import assert from "node:assert/strict";
import { chromium } from "./deps.ts";
import { SignJWT } from "jose";
import { startServer } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
const SECRET = "a-test-secret-of-at-least-32-bytes!!";

Deno.test({
  name:
    "auth browser: bearer entry alone fails, with hubbub.v1 or bearer it opens; /auth answers the page",
  ignore: !haveChromium,
  async fn() {
    const srv = await startServer({ jwtSecret: SECRET });
    const userDataDir = await Deno.makeTempDir({ prefix: "hubbub-chromium-" });
    const browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run"],
    });
    try {
      const token = await new SignJWT({ name: "Alice" })
        .setProtectedHeader({ alg: "HS256" }).setSubject("alice-id")
        .setExpirationTime("10m").sign(new TextEncoder().encode(SECRET));
      const page = await browser.newPage();
      await page.goto(`${srv.http}/?room=lobby`);
      const outcome = (protocols: string[]) =>
        page.evaluate((protocols) =>
          new Promise<string>((resolve) => {
            const ws = new WebSocket(
              location.origin.replace("http", "ws") + "/ws",
              protocols,
            );
            ws.onopen = () => {
              resolve("open " + ws.protocol);
              ws.close();
            };
            ws.onerror = () => resolve("failed");
          }), protocols);
      assert.equal(await outcome([`bearer.${token}`]), "failed");
      assert.equal(
        await outcome(["bearer", `bearer.${token}`]),
        "open bearer",
      );
      assert.equal(
        await outcome(["hubbub.v1", `bearer.${token}`]),
        "open hubbub.v1",
      );
      assert.equal(await outcome(["hubbub.v1"]), "failed");
      const check = await page.evaluate(async (token) => {
        const res = await fetch("/auth?room=lobby", {
          headers: { authorization: `Bearer ${token}` },
        });
        return { status: res.status, body: await res.json() };
      }, token);
      assert.equal(check.status, 200);
      assert.equal(check.body.auth, true);
      assert.equal(check.body.name, "Alice");
    } finally {
      await browser.close();
      await srv.close();
      await Deno.remove(userDataDir, { recursive: true });
    }
  },
});
