import assert from "node:assert/strict";
import {
  connect,
  startServer,
  TestSocket,
  UPGRADE_HEADERS,
  within,
  withServer,
} from "./helpers.ts";

Deno.test("GET / serves the page as html", () =>
  withServer(async (srv) => {
    const res = await fetch(srv.http + "/");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.match(
      res.headers.get("content-security-policy")!,
      /script-src 'sha256-[A-Za-z0-9+/]+=*'/,
    );
    const body = await res.text();
    const file = await Deno.readTextFile(
      new URL("../static/home.html", import.meta.url),
    );
    assert.equal(body, file);
  }));

Deno.test("HEAD / has the same headers and no body", () =>
  withServer(async (srv) => {
    const get = await fetch(srv.http + "/");
    const getBody = await get.arrayBuffer();
    const head = await fetch(srv.http + "/", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(
      head.headers.get("content-type"),
      get.headers.get("content-type"),
    );
    assert.equal(
      head.headers.get("content-length"),
      String(getBody.byteLength),
    );
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  }));

Deno.test("other methods on / get 405 with Allow", () =>
  withServer(async (srv) => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      const res = await fetch(srv.http + "/", { method });
      await res.body?.cancel();
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get("allow"), "GET, HEAD");
    }
  }));

Deno.test("/ws and /echo without an upgrade get 400 with a reason", () =>
  withServer(async (srv) => {
    for (const path of ["/ws", "/echo", "/ws?room=x"]) {
      const res = await fetch(srv.http + path);
      assert.equal(res.status, 400, path);
      assert.match(res.headers.get("content-type")!, /^text\/plain/);
      assert.match(await res.text(), /upgrade/i);
    }
    const res = await fetch(srv.http + "/ws", {
      headers: { ...UPGRADE_HEADERS, "sec-websocket-version": "8" },
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Version/);
  }));

Deno.test("invalid room names get 400 before the upgrade", () =>
  withServer(async (srv) => {
    for (const room of ["", "a b", "x".repeat(65), "é", "a/b", "a%00"]) {
      const res = await fetch(
        `${srv.http}/ws?room=${encodeURIComponent(room)}`,
        { headers: UPGRADE_HEADERS },
      );
      assert.equal(res.status, 400, JSON.stringify(room));
      assert.match(await res.text(), /room/);
    }
    const ok = await connect(`${srv.ws}/ws?room=${"x".repeat(64)}`);
    await ok.close();
    const dots = await connect(`${srv.ws}/ws?room=A-z_0.9`);
    await dots.close();
  }));

Deno.test("GET /healthz reports status, connections, rooms, uptime", () =>
  withServer(async (srv) => {
    const a = await connect(`${srv.ws}/ws?room=one`);
    const b = await connect(`${srv.ws}/ws?room=two`);
    const res = await fetch(srv.http + "/healthz");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /application\/json/);
    const health = await res.json();
    assert.equal(health.status, "ok");
    assert.equal(health.connections, 2);
    assert.equal(health.rooms, 2);
    assert.equal(typeof health.uptime, "number");
    await a.close();
    await b.close();
  }));

Deno.test("GET /metrics is Prometheus text with the contract's series", () =>
  withServer(async (srv) => {
    const a = await connect(`${srv.ws}/ws`);
    a.send("hello");
    await a.waitLines(1);
    const res = await fetch(srv.http + "/metrics");
    assert.equal(res.status, 200);
    assert.match(
      res.headers.get("content-type")!,
      /^text\/plain; version=0\.0\.4/,
    );
    const text = await res.text();
    for (
      const line of [
        "hubbub_connections 1",
        "hubbub_rooms 1",
        "hubbub_messages_received_total 1",
        "hubbub_messages_delivered_total 1",
        'hubbub_evictions_total{reason="slow_consumer"} 0',
        "hubbub_rate_limited_total 0",
        "hubbub_history_messages 1",
        "hubbub_evicted_unclosed_sockets 0",
      ]
    ) assert.ok(text.split("\n").includes(line), `missing ${line}`);
    assert.match(text, /^hubbub_bytes_out_total \d+$/m);
    await a.close();
    const after = await (await fetch(srv.http + "/metrics")).text();
    assert.match(after, /^hubbub_closes_total\{code="1000"\} 1$/m);
  }));

Deno.test("GET /favicon.ico is the embedded icon, not a 404", () =>
  withServer(async (srv) => {
    const res = await fetch(srv.http + "/favicon.ico");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/x-icon");
    const bytes = new Uint8Array(await res.arrayBuffer());
    // ICO header: reserved 0, type 1 (icon), one image.
    assert.deepEqual([...bytes.subarray(0, 6)], [0, 0, 1, 0, 1, 0]);
    const head = await fetch(srv.http + "/favicon.ico", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  }));

Deno.test("anything else is 404", () =>
  withServer(async (srv) => {
    for (const path of ["/nope", "/ws/", "/index.html", "/healthz/x"]) {
      const res = await fetch(srv.http + path);
      await res.body?.cancel();
      assert.equal(res.status, 404, path);
    }
  }));

Deno.test("origin: own origin and no origin pass, others get 403", async () => {
  const srv = await startServer();
  try {
    const own = await fetch(`${srv.http}/ws`, {
      headers: { ...UPGRADE_HEADERS, origin: "http://evil.example" },
    });
    assert.equal(own.status, 403);
    await own.body?.cancel();
    const echo = await fetch(`${srv.http}/echo`, {
      headers: { ...UPGRADE_HEADERS, origin: "http://evil.example" },
    });
    assert.equal(echo.status, 403);
    await echo.body?.cancel();
    // Deno's WebSocket sends no Origin: a non-browser client.
    const plain = await connect(`${srv.ws}/ws`);
    await plain.close();
  } finally {
    await srv.close();
  }
  const open = await startServer({ allowOrigin: ["http://app.example"] });
  try {
    const listed = new TestSocket(`${open.ws}/ws`);
    await within(listed.opened, "open");
    await listed.close();
  } finally {
    await open.close();
  }
});

Deno.test("--max-connections: beyond it, 503 before the upgrade", () =>
  withServer(async (srv) => {
    const a = await connect(`${srv.ws}/ws`);
    const b = await connect(`${srv.ws}/echo`);
    const res = await fetch(`${srv.http}/ws`, { headers: UPGRADE_HEADERS });
    assert.equal(res.status, 503);
    await res.body?.cancel();
    await a.close();
    await b.close();
  }, { maxConnections: 2 }));
