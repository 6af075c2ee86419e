import assert from "node:assert/strict";
import { memory } from "../bench/memory.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  closeAll,
  connect,
  rawHandshake,
  spawnServer,
  TestSocket,
  until,
  within,
} from "./helpers.ts";

async function metric(http: string, series: string): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  if (!line) throw new Error(`no ${series}`);
  return Number(line.slice(series.length + 1));
}

Deno.test("a peer that never reads is evicted; 20 others get every message; memory stays bounded", async () => {
  const srv = await spawnServer(["--rate-limit", "0"]);
  const readers: TestSocket[] = [];
  let stuck: Deno.TcpConn | null = null;
  try {
    const rssBefore = (await memory(srv.child.pid)).rss;
    stuck = await rawHandshake(srv.port, "/ws");
    for (let i = 0; i < 20; i++) readers.push(await connect(`${srv.ws}/ws`));
    const sender = readers[0];
    const payload = "p".repeat(8000);
    let sent = 0;
    let peak = rssBefore;
    // Bounded: 4000 × 8 KB = 32 MB offered to the stuck peer at most.
    while (sent < 4000) {
      for (let i = 0; i < 100; i++) sender.send(`${sent++} ${payload}`);
      await Promise.all(readers.map((r) => r.waitLines(sent)));
      peak = Math.max(peak, (await memory(srv.child.pid)).rss);
      if (
        await metric(
          srv.http,
          'hubbub_evictions_total{reason="slow_consumer"}',
        ) === 1
      ) break;
    }
    assert.equal(
      await metric(srv.http, 'hubbub_evictions_total{reason="slow_consumer"}'),
      1,
      `not evicted after ${sent} messages`,
    );
    // The evicted socket cannot be closed while its peer does not read
    // (denoland/deno#27924); it is counted, and nobody waits for it.
    assert.equal(await metric(srv.http, "hubbub_evicted_unclosed_sockets"), 1);
    for (let i = 0; i < 100; i++) sender.send(`${sent++} after`);
    await Promise.all(readers.map((r) => r.waitLines(sent)));
    for (const r of readers) {
      assert.equal(r.lines.length, sent);
      assert.ok(r.lines.every((l, i) => l.startsWith(`${i} `)));
    }
    const rssAfter = (await memory(srv.child.pid)).rss;
    console.log(
      `server RSS MB: before ${(rssBefore / 2 ** 20).toFixed(1)}, peak ${
        (peak / 2 ** 20).toFixed(1)
      }, after ${(rssAfter / 2 ** 20).toFixed(1)} (${sent} messages of 8 KB)`,
    );
    assert.ok(peak - rssBefore < 200 * 2 ** 20, "server memory grew > 200 MB");
    // Once the peer goes away, the socket is released and uncounted.
    stuck.close();
    stuck = null;
    await until(
      async () =>
        await metric(srv.http, "hubbub_evicted_unclosed_sockets") === 0,
      "evicted socket released",
    );
  } finally {
    stuck?.close();
    await closeAll(readers);
    assert.equal((await srv.stop()).code, 0);
  }
});

Deno.test("a socket that was sent a big frame does not keep a buffer that size", async () => {
  const srv = await spawnServer(["--rate-limit", "0"]);
  const clients: TestSocket[] = [];
  try {
    // 100 messages of 15 KB make every welcome about 1.5 MB.
    const filler = await connect(`${srv.ws}/ws?room=big`, JSON_SUBPROTOCOL);
    clients.push(filler);
    const text = "w".repeat(15_000);
    for (let i = 0; i < 100; i++) {
      filler.send(JSON.stringify({ type: "message", text }));
    }
    await filler.waitFor(
      () => filler.lines.filter((l) => l.includes(text)).length === 100,
      "history filled",
    );
    let welcomeBytes = 0;
    const join = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const c = await connect(`${srv.ws}/ws?room=big`, JSON_SUBPROTOCOL);
        clients.push(c);
        await c.waitFor(() => c.frames.length > 0, "welcome");
        welcomeBytes = String(c.frames[0]).length;
      }
    };
    // A first round lets the server's heap settle to its working size, so
    // that the second measures what each socket keeps.
    await join(40);
    const rssBefore = (await memory(srv.child.pid)).rss;
    await join(60);
    const perClient = ((await memory(srv.child.pid)).rss - rssBefore) / 60;
    console.log(
      `welcome ${(welcomeBytes / 2 ** 20).toFixed(2)} MB; server RSS grew ${
        (perClient / 2 ** 10).toFixed(0)
      } KB per client`,
    );
    // Without vectored writes Deno keeps a copy of the largest frame per
    // socket, which made this 1.5 to 2 welcomes per client.
    assert.ok(welcomeBytes > 1_400_000);
    assert.ok(
      perClient < welcomeBytes / 4,
      "a welcome-sized buffer per client",
    );
  } finally {
    await closeAll(clients);
    assert.equal((await srv.stop()).code, 0);
  }
});

Deno.test("a peer that vanishes without a close frame is dropped after --idle-timeout", async () => {
  const srv = await spawnServer(["--idle-timeout", "1"]);
  let ghost: Deno.TcpConn | null = null;
  try {
    // Handshake, then never answer the server's pings: a dead peer.
    ghost = await rawHandshake(srv.port, "/ws");
    const live = await connect(`${srv.ws}/ws`);
    await until(async () => {
      const h = await (await fetch(`${srv.http}/healthz`)).json();
      return h.connections === 2;
    }, "2 connections");
    // The live client keeps talking; its socket answers pings by itself.
    await until(async () => {
      const h = await (await fetch(`${srv.http}/healthz`)).json();
      return h.connections === 1;
    }, "ghost dropped");
    assert.equal(
      await metric(srv.http, 'hubbub_evictions_total{reason="idle_timeout"}'),
      1,
    );
    live.send("still here");
    await live.waitLines(1);
    assert.deepEqual(live.lines, ["still here"]);
    await live.close();
  } finally {
    ghost?.close();
    assert.equal((await srv.stop()).code, 0);
  }
});

Deno.test("SIGTERM closes every socket with 1001 and exits 0", async () => {
  const srv = await spawnServer([]);
  const clients: TestSocket[] = [];
  try {
    for (let i = 0; i < 5; i++) clients.push(await connect(`${srv.ws}/ws`));
    clients.push(await connect(`${srv.ws}/echo`));
    const status = await srv.stop();
    for (const c of clients) {
      const ev = await within(c.closed, "close");
      assert.equal(ev.code, 1001);
      assert.equal(ev.reason, "server shutting down");
    }
    assert.equal(status.code, 0);
    assert.match(srv.stderr(), /stopping signal=SIGTERM/);
    assert.match(srv.stderr(), /stopped/);
  } finally {
    await srv.stop();
  }
});
