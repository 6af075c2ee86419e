/**
 * A seeded run of hostile input: random bytes, odd HTTP handshakes, malformed
 * and deeply nested JSON, huge and invalid strings, invalid UTF-8, control
 * characters, odd frames and floods, over raw TCP so that nothing a browser
 * would refuse to send is left out. The server must stay up, answer no 5xx,
 * log no ERROR, let its memory come back near where it started, and keep two
 * ordinary clients chatting throughout.
 *
 * The seed is printed; `HUBBUB_FUZZ_SEED=N` replays a run.
 */
import assert from "node:assert/strict";
import { memory } from "../bench/memory.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  clientFrame,
  connect,
  readResponseHead,
  spawnServer,
  type TestSocket,
  until,
} from "./helpers.ts";

/** Cases per run: a few thousand, a few seconds. */
const CASES = 3000;
/** Frames sent on one raw connection before the next one opens. */
const FRAMES_PER_CONNECTION = 25;

/** mulberry32: small, fast, and the same sequence for the same seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Helpers bound to one generator. */
function chooser(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = int(256);
    return out;
  };
  const text = (n: number) => {
    let s = "";
    for (let i = 0; i < n; i++) {
      s += String.fromCharCode(
        pick([int(32), 32 + int(95), 0x80 + int(0x780), 0xd800 + int(0x800)]),
      );
    }
    return s;
  };
  return { int, pick, bytes, text };
}

const encoder = new TextEncoder();

/** One hostile WebSocket frame (bytes on the wire, masked unless odd). */
function hostileFrame(c: ReturnType<typeof chooser>): Uint8Array {
  const { int, pick, bytes, text } = c;
  const json = (value: unknown) => encoder.encode(JSON.stringify(value));
  switch (int(16)) {
    case 0: // malformed JSON
      return clientFrame(
        1,
        encoder.encode(pick(["{", "}", "[1,", '{"type":', "nul", '"\\u12"'])),
      );
    case 1: { // deeply nested JSON
      const depth = pick([100, 1000, 5000]);
      return clientFrame(
        1,
        encoder.encode("[".repeat(depth) + "]".repeat(depth)),
      );
    }
    case 2: // wrong types and unknown message types
      return clientFrame(
        1,
        json(pick([
          { type: "message", text: pick([null, 1, [], {}, true]) },
          { type: "nick", name: pick([null, "", " ", "x".repeat(100), 7]) },
          { type: pick(["", "welcome", "__proto__", "constructor"]) },
          { type: "message", text: "x", __proto__: { polluted: true } },
          ["message"],
          null,
          42,
        ])),
      );
    case 3: // huge strings, around the 16 KiB limit
      return clientFrame(
        1,
        json({
          type: "message",
          text: "h".repeat(pick([16_000, 16_384, 16_400, 40_000])),
        }),
      );
    case 4: // control characters, lone surrogates, odd Unicode
      return clientFrame(
        1,
        json({
          type: pick(["message", "nick"]),
          text: text(int(64)),
          name: text(int(40)),
        }),
      );
    case 5: // invalid UTF-8 in a text frame
      return clientFrame(
        1,
        pick([
          new Uint8Array([0xff, 0xfe]),
          new Uint8Array([0xc3]),
          new Uint8Array([0xed, 0xa0, 0x80]),
          bytes(1 + int(40)),
        ]),
      );
    case 6: // binary frames
      return clientFrame(2, bytes(int(100)));
    case 7: // pings and pongs with payloads, some over the 125-byte limit
      return clientFrame(pick([9, 10]), bytes(pick([0, 10, 125, 126])));
    case 8: // a continuation without a start, reserved opcodes
      return clientFrame(pick([0, 3, 4, 5, 6, 7, 11, 15]), bytes(int(20)));
    case 9: { // RSV bits set
      const frame = clientFrame(1, json({ type: "who" }));
      frame[0] |= pick([0x40, 0x20, 0x10]);
      return frame;
    }
    case 10: { // an unmasked client frame
      const payload = json({ type: "message", text: "unmasked" });
      return new Uint8Array([0x81, payload.length, ...payload]);
    }
    case 11: // a fragmented message, finished or not
      return new Uint8Array([
        ...clientFrame(1, encoder.encode('{"type":"mess'), false),
        ...(int(2)
          ? clientFrame(0, encoder.encode('age","text":"frag"}'))
          : []),
      ]);
    case 12: // close frames with odd codes and reasons
      return clientFrame(
        8,
        pick([
          new Uint8Array([]),
          new Uint8Array([0x03]),
          new Uint8Array([0x03, 0xe8, 0xff]),
          new Uint8Array([0x00, 0x00]),
          new Uint8Array([0x13, 0x88, ...encoder.encode("odd")]),
        ]),
      );
    case 13: // a declared length far beyond what follows
      return new Uint8Array([
        0x81,
        0xff,
        0,
        0,
        0,
        0,
        0x7f,
        0xff,
        0xff,
        0xff,
        1,
        2,
        3,
        4,
      ]);
    case 14: { // a flood
      const one = clientFrame(1, json({ type: "message", text: "flood" }));
      const out = new Uint8Array(one.length * 100);
      for (let i = 0; i < 100; i++) out.set(one, i * one.length);
      return out;
    }
    default: // a valid message, so that valid and hostile traffic mix
      return clientFrame(1, json({ type: "message", text: text(int(30)) }));
  }
}

/** Every UTF-8 byte percent-encoded (lone surrogates become U+FFFD). */
function percent(s: string): string {
  return [...encoder.encode(s)].map((b) =>
    "%" + b.toString(16).padStart(2, "0")
  ).join("");
}

/** A handshake with random but mostly plausible parts. */
function hostileHandshake(
  c: ReturnType<typeof chooser>,
  port: number,
): string[] {
  const { int, pick, text } = c;
  if (int(2) === 0) {
    // Valid, so that half the cases reach the socket.
    return [
      `GET /ws?room=${pick(["lobby", "lobby", "other"])} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...(int(4) ? [`Sec-WebSocket-Protocol: ${JSON_SUBPROTOCOL}`] : []),
    ];
  }
  const room = pick(["lobby", "lobby", "x", "", "a".repeat(65), "é", "../"]);
  const query = pick([
    `?room=${percent(room)}`,
    `?room=lobby&since=${pick(["0", "-1", "1e3", "99999999999999999"])}`,
    `?name=${percent(text(int(40)))}`,
    `?epoch=${pick(["", "x".repeat(40), "ok"])}&since=1`,
    "",
  ]);
  return [
    `GET ${pick(["/ws", "/ws", "/echo", "/nope"])}${query} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    pick(["Upgrade: websocket", "Upgrade: WebSocket", "Upgrade: h2c"]),
    pick([
      "Connection: Upgrade",
      "Connection: keep-alive, Upgrade",
      "Connection: close",
    ]),
    `Sec-WebSocket-Key: ${
      pick([
        "dGhlIHNhbXBsZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ==",
        "short",
        "",
      ])
    }`,
    `Sec-WebSocket-Version: ${pick(["13", "13", "8"])}`,
    ...pick([
      [],
      [`Sec-WebSocket-Protocol: ${JSON_SUBPROTOCOL}`],
      [`Sec-WebSocket-Protocol: chat,${JSON_SUBPROTOCOL}`],
      [`Sec-WebSocket-Protocol: ,, ,`],
      [
        `Sec-WebSocket-Protocol: a`,
        `Sec-WebSocket-Protocol: ${JSON_SUBPROTOCOL}`,
      ],
    ]),
    ...pick([[], ["Origin: http://evil.example"], [
      "X-Forwarded-For: 1.2.3.4",
    ]]),
  ];
}

/** Errors a raw connection meets when the server or the test ends it. */
function connectionEnded(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted ||
    (err instanceof Error && /closed during the response/.test(err.message));
}

/** Reads and drops whatever the server sends until the connection ends. */
async function drain(conn: Deno.Conn): Promise<void> {
  const sink = new Uint8Array(64 * 1024);
  try {
    while (await conn.read(sink) !== null) { /* dropped */ }
  } catch (err) {
    if (!connectionEnded(err)) throw err;
  }
}

Deno.test("hostile input: the server stays up, bounded, and others keep chatting", async () => {
  const seed = Number(
    Deno.env.get("HUBBUB_FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31),
  );
  console.log(
    `hostile input seed: ${seed} (replay with HUBBUB_FUZZ_SEED=${seed})`,
  );
  const c = chooser(random(seed));
  const srv = await spawnServer([]);
  let alice: TestSocket | null = null;
  let bob: TestSocket | null = null;
  const statuses = new Map<number, number>();
  try {
    alice = await connect(`${srv.ws}/ws?name=alice`, JSON_SUBPROTOCOL);
    bob = await connect(`${srv.ws}/ws?name=bob`);
    let said = 0;
    const chat = async () => {
      const text = `still here ${++said}`;
      alice!.send(JSON.stringify({ type: "message", text }));
      await bob!.waitFor(
        () => bob!.lines.includes(text),
        `seed ${seed}: bob hears "${text}" (alice ${
          alice!.socket.readyState
        }, bob ${bob!.socket.readyState})`,
      );
    };
    await chat();
    const rssBefore = (await memory(srv.child.pid)).rss;
    let done = 0;
    let nextChat = 500;
    while (done < CASES) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: srv.port,
      });
      try {
        if (c.int(10) === 0) {
          // Not HTTP at all.
          await conn.write(c.bytes(1 + c.int(2000))).catch(() => {});
          done++;
        } else {
          await conn.write(
            encoder.encode(
              hostileHandshake(c, srv.port).join("\r\n") + "\r\n\r\n",
            ),
          );
          done++;
          const { status } = await readResponseHead(conn);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === 101) {
            const draining = drain(conn);
            for (
              let i = 0;
              i < FRAMES_PER_CONNECTION && done < CASES;
              i++, done++
            ) {
              const ok = await conn.write(hostileFrame(c)).then(
                () => true,
                () => false,
              );
              if (!ok) break;
            }
            conn.close();
            await draining;
            continue;
          }
        }
      } catch (err) {
        if (!connectionEnded(err)) {
          throw new Error(`seed ${seed}, case ${done}: ${err}`);
        }
      }
      try {
        conn.close();
      } catch (err) {
        if (!(err instanceof Deno.errors.BadResource)) throw err;
      }
      if (done >= nextChat) {
        await chat();
        nextChat += 500;
      }
    }
    await chat();
    // Everything hostile gone, every socket the server gave up on released.
    await until(async () => {
      const h = await (await fetch(`${srv.http}/healthz`)).json();
      return h.connections === 2;
    }, `seed ${seed}: only the two chatting clients left`);
    await until(async () => {
      const m = await (await fetch(`${srv.http}/metrics`)).text();
      return m.includes("hubbub_evicted_unclosed_sockets 0\n");
    }, `seed ${seed}: every closed socket released`);
    await chat();
    const rssAfter = (await memory(srv.child.pid)).rss;
    console.log(
      `${CASES} cases; statuses ${
        JSON.stringify(Object.fromEntries(statuses))
      }; ` +
        `server RSS ${(rssBefore / 2 ** 20).toFixed(1)} MB before, ${
          (rssAfter / 2 ** 20).toFixed(1)
        } MB after`,
    );
    assert.ok(
      ![...statuses.keys()].some((s) => s >= 500),
      `seed ${seed}: a 5xx`,
    );
    assert.ok(
      rssAfter - rssBefore < 64 * 2 ** 20,
      `seed ${seed}: RSS grew by more than 64 MB`,
    );
  } catch (err) {
    const m = await (await fetch(`${srv.http}/metrics`)).text();
    console.log(m.split("\n").filter((l) => !l.startsWith("#")).join("\n"));
    console.log(srv.stderr().slice(-3000));
    console.log(
      "alice lines",
      alice?.lines.slice(-5),
      "bob lines",
      bob?.lines.length,
      bob?.lines.slice(-3).map((l) => l.slice(0, 80)),
    );
    throw err;
  } finally {
    await alice?.close();
    await bob?.close();
    await srv.stop();
  }
  assert.doesNotMatch(srv.stderr(), / ERROR /, `seed ${seed}: an ERROR line`);
});
