import assert from "node:assert/strict";
import { createHubbub } from "../mod.ts";
import { connect, spawnServer } from "./helpers.ts";

Deno.test("mod.ts mounts under a path prefix of a plain Deno.serve app", async () => {
  const chat = createHubbub({ basePath: "/chat" });
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve(
    {
      port: 0,
      hostname: "127.0.0.1",
      onListen: (a) => listening.resolve(a.port),
    },
    (req) => {
      const { pathname } = new URL(req.url);
      if (pathname === "/chat" || pathname.startsWith("/chat/")) {
        return chat.handler(req);
      }
      return new Response("the host app", {
        status: pathname === "/" ? 200 : 404,
      });
    },
  );
  const port = await listening.promise;
  const http = `http://127.0.0.1:${port}`;
  try {
    assert.equal(await (await fetch(http + "/")).text(), "the host app");
    const page = await fetch(http + "/chat/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /text\/html/);
    await page.body?.cancel();
    const bare = await fetch(http + "/chat", { redirect: "manual" });
    await bare.body?.cancel();
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get("location"), "/chat/");
    const health = await (await fetch(http + "/chat/healthz")).json();
    assert.equal(health.status, "ok");
    const missing = await fetch(http + "/chat/nope");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const a = await connect(`ws://127.0.0.1:${port}/chat/ws?room=embedded`);
    a.send("mounted");
    await a.waitLines(1);
    assert.deepEqual(a.lines, ["mounted"]);
    await a.close();
  } finally {
    await chat.close(1000);
    await server.shutdown();
  }
});

Deno.test("the page is embedded: served by a deno run without read permission", async () => {
  // --deny-read: not even a prompt could grant the read the page must not need.
  const srv = await spawnServer([], ["--allow-net", "--deny-read"]);
  try {
    const res = await fetch(srv.http + "/");
    assert.equal(res.status, 200);
    const served = new Uint8Array(await res.arrayBuffer());
    const file = await Deno.readFile(
      new URL("../static/home.html", import.meta.url),
    );
    assert.deepEqual(served, file);
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

Deno.test("embed: a bad key set or Redis URL throws from createHubbub, not later", () => {
  assert.throws(() => createHubbub({ jwtJwksUrl: "not a url" }), TypeError);
  assert.throws(
    () => createHubbub({ redis: "redis://127.0.0.1:1/abc" }),
    /redis URL: the path must be a database number/,
  );
});
