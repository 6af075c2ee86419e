import assert from "node:assert/strict";
import { clientAddress } from "../addresses.ts";
import { offeredProtocols } from "../gate.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  clientFrame,
  connect,
  rawHandshake,
  rawRequest,
  readFrame,
  spawnServer,
  type TestServer,
  until,
  UPGRADE_HEADERS,
  upgradeHead,
  within,
  withServer,
} from "./helpers.ts";
import { redisMissing, startRedis } from "./redis_helpers.ts";

Deno.test("offeredProtocols reads an HTTP list however it is spaced", () => {
  const cases: [string | null, string[]][] = [
    [null, []],
    ["", []],
    ["chat,hubbub.v1", ["chat", "hubbub.v1"]],
    ["chat, hubbub.v1", ["chat", "hubbub.v1"]],
    ["chat,  hubbub.v1", ["chat", "hubbub.v1"]],
    ["hubbub.v1,chat", ["hubbub.v1", "chat"]],
    [" ,chat,\thubbub.v1 ,, ", ["chat", "hubbub.v1"]],
    ["bearer.a.b.c, hubbub.v1", ["bearer.a.b.c", "hubbub.v1"]],
  ];
  for (const [header, list] of cases) {
    assert.deepEqual(offeredProtocols(header), list, String(header));
  }
});

Deno.test("Sec-WebSocket-Protocol: every spelling of a list upgrades; no 5xx, no ERROR line", async () => {
  const srv = await spawnServer([]);
  try {
    const json: string[][] = [
      ["Sec-WebSocket-Protocol: chat,hubbub.v1"],
      ["Sec-WebSocket-Protocol: hubbub.v1,chat"],
      ["Sec-WebSocket-Protocol: chat,  hubbub.v1"],
      ["Sec-WebSocket-Protocol: chat, hubbub.v1"],
      ["Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: hubbub.v1"],
      ["Sec-WebSocket-Protocol: ,hubbub.v1,"],
    ];
    const plain: string[][] = [
      [],
      ["Sec-WebSocket-Protocol: chat,superchat"],
      ["Sec-WebSocket-Protocol: ,,"],
      ["Sec-WebSocket-Protocol: hubbub.v2"],
    ];
    for (const [offers, wantJson] of [[json, true], [plain, false]] as const) {
      for (const extra of offers) {
        for (const path of ["/ws", "/echo"]) {
          const { conn, response } = await rawRequest(
            srv.port,
            upgradeHead(srv.port, path, extra),
          );
          try {
            const what = `${path} ${extra.join(" | ")}`;
            assert.equal(response.status, 101, what);
            const chosen = response.headers.get("sec-websocket-protocol");
            if (path === "/ws" && wantJson) {
              assert.equal(chosen, JSON_SUBPROTOCOL, what);
              const welcome = await readFrame(conn);
              assert.ok(welcome, what);
              const text = new TextDecoder().decode(welcome.payload);
              const first = JSON.parse(text.split("\n")[0]);
              assert.equal(first.type, "welcome", what);
            } else {
              assert.equal(chosen, undefined, what);
            }
          } finally {
            conn.close();
          }
        }
      }
    }
  } finally {
    await srv.stop();
  }
  assert.doesNotMatch(srv.stderr(), / ERROR /);
});

/**
 * Types of what `ann` is sent after sending, in one write (so the server
 * reads them in one turn), a message, a nick, a who and a malformed frame;
 * read until both the message and the error came.
 */
async function replyOrder(srv: TestServer): Promise<string[]> {
  const { conn, response } = await rawRequest(
    srv.port,
    upgradeHead(srv.port, "/ws?room=order&name=ann", [
      `Sec-WebSocket-Protocol: ${JSON_SUBPROTOCOL}`,
    ]),
  );
  try {
    assert.equal(response.status, 101);
    const lines: string[] = [];
    const readUntil = async (...types: string[]) => {
      const seen = () => lines.map((l) => JSON.parse(l).type);
      while (!types.every((t) => seen().includes(t))) {
        const frame = await readFrame(conn);
        if (frame === null) throw new Error(`closed before ${types}`);
        lines.push(...new TextDecoder().decode(frame.payload).split("\n"));
      }
      return seen();
    };
    await readUntil("join");
    lines.length = 0;
    const text = (o: unknown) =>
      clientFrame(1, new TextEncoder().encode(JSON.stringify(o)));
    const frames = [
      text({ type: "message", text: "first" }),
      text({ type: "nick", name: "bob" }),
      text({ type: "who" }),
      clientFrame(1, new TextEncoder().encode("{not json")),
    ];
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      all.set(f, at);
      at += f.length;
    }
    await conn.write(all);
    return await readUntil("message", "error");
  } finally {
    conn.close();
  }
}

Deno.test("a reply never overtakes a room event queued before it", () =>
  withServer(async (srv) => {
    assert.deepEqual(
      await replyOrder(srv),
      ["message", "nick", "presence", "error"],
    );
  }));

Deno.test({
  name:
    "with --redis the same rule: replies keep their place, the message comes once the relay sequenced it",
  ignore: redisMissing() !== null,
  fn: async () => {
    const redis = await startRedis();
    try {
      // The message is in the room's log only when the relay delivers it,
      // after the turn that queued the nick, the presence and the error.
      await withServer(async (srv) => {
        await until(async () => {
          const res = await fetch(`${srv.http}/healthz`);
          return (await res.json()).status === "ok";
        }, "the Redis link up");
        assert.deepEqual(
          await replyOrder(srv),
          ["nick", "presence", "error", "message"],
        );
      }, { redis: redis.url });
    } finally {
      await redis.stop();
    }
  },
});

Deno.test("clientAddress: the TCP peer, or with --trust-proxy the address the proxy appended", () => {
  const remote: Deno.NetAddr = {
    transport: "tcp",
    hostname: "10.0.0.2",
    port: 4000,
  };
  const req = (xff?: string) =>
    new Request("http://h/ws", {
      headers: xff === undefined ? {} : { "x-forwarded-for": xff },
    });
  assert.equal(clientAddress(req(), remote, false), "10.0.0.2");
  assert.equal(clientAddress(req("203.0.113.9"), remote, false), "10.0.0.2");
  assert.equal(clientAddress(req("203.0.113.9"), remote, true), "203.0.113.9");
  // A client may send its own X-Forwarded-For; the proxy appends the
  // address it saw, so only the right-most entry is the proxy's word.
  assert.equal(
    clientAddress(req("1.1.1.1, 203.0.113.9"), remote, true),
    "203.0.113.9",
  );
  assert.equal(clientAddress(req(" , "), remote, true), "10.0.0.2");
  assert.equal(clientAddress(req(), undefined, false), null);
});

Deno.test("a Sec-WebSocket-Key that is not 16 bytes in base64 gets 400", () =>
  withServer(async (srv) => {
    for (
      const key of ["abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZXM="]
    ) {
      const res = await fetch(`${srv.http}/ws`, {
        headers: { ...UPGRADE_HEADERS, "sec-websocket-key": key },
      });
      assert.equal(res.status, 400, key);
      assert.match(await res.text(), /Sec-WebSocket-Key/);
    }
  }));

Deno.test("a TCP drop is counted as close code 1006", () =>
  withServer(async (srv) => {
    const conn = await rawHandshake(srv.port, "/ws");
    await until(
      async () =>
        (await (await fetch(`${srv.http}/healthz`)).json()).connections === 1,
      "connected",
    );
    conn.close();
    await until(async () => {
      const text = await (await fetch(`${srv.http}/metrics`)).text();
      return text.includes('hubbub_closes_total{code="1006"} 1');
    }, "a close counted as 1006");
  }));

Deno.test("a flooder past the rate limit sees close 1008, not a reset", () =>
  withServer(async (srv) => {
    const flooder = await connect(`${srv.ws}/ws`, JSON_SUBPROTOCOL);
    for (let i = 0; i < 300; i++) {
      flooder.send(JSON.stringify({ type: "message", text: `f${i}` }));
    }
    const ev = await within(flooder.closed, "close");
    assert.equal(ev.code, 1008);
    assert.equal(ev.reason, "rate limit exceeded");
  }, { rateLimit: 20, rateBurst: 40 }));

Deno.test("--max-memory: past it new upgrades get 503 and a log line says why; the page stays up", async () => {
  const srv = await spawnServer(["--max-memory", "1"]);
  try {
    const res = await fetch(`${srv.ws.replace("ws:", "http:")}/ws`, {
      headers: UPGRADE_HEADERS,
    });
    assert.equal(res.status, 503);
    assert.match(await res.text(), /--max-memory/);
    const page = await fetch(`${srv.http}/`);
    await page.body?.cancel();
    assert.equal(page.status, 200);
  } finally {
    await srv.stop();
  }
  assert.match(srv.stderr(), /WARN shedding load: upgrades get 503 reason=/);
});
