import assert from "node:assert/strict";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import { runClient, spawnClient } from "./cli_helpers.ts";
import {
  connect,
  freePort,
  selfSigned,
  serveLocal,
  type ServerProcess,
  spawnServer,
  type TestServer,
  until,
  withServer,
} from "./helpers.ts";

const CLOCK = /^\[\d\d:\d\d\] /;

function closes1000(srv: TestServer): number {
  return srv.hubbub.metrics.closes.get("1000") ?? 0;
}

Deno.test("connect: echo hello | hubbub connect ws://HOST:PORT/echo prints hello and exits 0", () =>
  withServer(async (srv) => {
    const r = await runClient([`${srv.ws}/echo`], "hello\n");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello\n");
    assert.equal(r.stderr, "");
    // The server saw our close 1000.
    await until(() => closes1000(srv) === 1, "server counts close 1000");
  }));

Deno.test("connect: plain mode prints echoed lines as they come, a last line without a break included", () =>
  withServer(async (srv) => {
    const r = await runClient([`${srv.ws}/echo`], "one\r\n\ntwo\nthree");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "one\ntwo\nthree\n");
  }));

Deno.test("connect: a chat on /ws shows [HH:MM] name: text on stdout, joins on stderr", () =>
  withServer(async (srv) => {
    const other = await connect(
      `${srv.ws}/ws?room=r1&name=ann`,
      JSON_SUBPROTOCOL,
    );
    const client = spawnClient([
      `${srv.ws}/ws`,
      "--room",
      "r1",
      "--nick",
      "bob",
    ]);
    try {
      await client.waitFor(/joined r1 as bob \(2 members\)/);
      other.send(JSON.stringify({ type: "message", text: "hi bob" }));
      await client.waitFor(/ann: hi bob/);
      await client.write("hi ann\n");
      await other.waitFor(
        () => other.lines.some((l) => l.includes('"text":"hi ann"')),
        "ann sees bob",
      );
      const seen = other.messages.find((m) => m.text === "hi ann")!;
      assert.equal(seen.from, "bob");
      await client.end();
      const status = await client.exit();
      assert.equal(status.code, 0, client.stderr());
      const out = client.lines();
      assert.deepEqual(out.map((l) => l.replace(CLOCK, "")), [
        "ann: hi bob",
        "bob: hi ann",
      ]);
      for (const line of out) assert.match(line, CLOCK);
      assert.match(client.stderr(), /^\* joined r1 as bob/m);
      await until(() => closes1000(srv) === 1, "server counts close 1000");
    } finally {
      await client.exit("SIGKILL");
      await other.close();
    }
  }));

Deno.test("connect: --json prints the server's objects, one per line", () =>
  withServer(async (srv) => {
    const r = await runClient(
      [`${srv.ws}/ws?room=r2`, "--json", "--nick", "cy"],
      "first\nsecond\n",
    );
    assert.equal(r.code, 0, r.stderr);
    const objects = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(objects[0].type, "welcome");
    assert.equal(objects[0].you, "cy");
    const texts = objects.filter((o) => o.type === "message").map((o) =>
      o.text
    );
    assert.deepEqual(texts, ["first", "second"]);
  }));

Deno.test("connect: SIGINT closes with 1000 and exits 0", () =>
  withServer(async (srv) => {
    const client = spawnClient([`${srv.ws}/ws?room=r3`]);
    await client.waitFor(/joined r3/);
    const status = await client.exit("SIGINT");
    assert.equal(status.code, 0, client.stderr());
    await until(() => closes1000(srv) === 1, "server counts close 1000");
  }));

Deno.test("connect: a server shutdown (1001) ends the client with a clear line", async () => {
  const srv = await spawnServer([]);
  const client = spawnClient([`${srv.ws}/ws`]);
  try {
    await client.waitFor(/joined lobby/);
    assert.equal((await srv.stop("SIGTERM")).code, 0);
    const status = await client.exit();
    assert.equal(status.code, 0);
    assert.match(
      client.stderr(),
      /^hubbub: the server went away \(1001 server shutting down\)$/m,
    );
  } finally {
    await client.exit("SIGKILL");
    await srv.stop();
  }
});

Deno.test("connect: server killed mid-stream exits 1", async () => {
  const srv = await spawnServer([]);
  const client = spawnClient([`${srv.ws}/ws`]);
  try {
    await client.waitFor(/joined lobby/);
    await srv.stop("SIGKILL");
    const status = await client.exit();
    assert.equal(status.code, 1);
    assert.match(client.stderr(), /^hubbub: connection dropped/m);
  } finally {
    await client.exit("SIGKILL");
  }
});

Deno.test("connect: nothing listening exits 3", async () => {
  const r = await runClient([`ws://127.0.0.1:${freePort()}/ws`]);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /^hubbub: cannot connect to .*connection refused/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

Deno.test("connect: a name that does not resolve exits 3", async () => {
  // .invalid never resolves (RFC 2606), with or without a network.
  const r = await runClient(["ws://hubbub-test.invalid:8080/ws"]);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /^hubbub: cannot connect to .*name lookup failed/);
});

Deno.test("connect: a 400 for a bad room exits 4 with the status and the server's reason", () =>
  withServer(async (srv) => {
    const r = await runClient([`${srv.ws}/ws`, "--room", "no room!"]);
    assert.equal(r.code, 4);
    assert.match(
      r.stderr,
      /^hubbub: .* refused the upgrade: HTTP 400 Bad Request: room must be 1-64 characters/,
    );
  }));

Deno.test("connect: a 503 at the connection cap exits 4", () =>
  withServer(async (srv) => {
    const r = await runClient([`${srv.ws}/echo`]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /HTTP 503 .*: too many connections/);
  }, { maxConnections: 0 }));

Deno.test("connect: bad usage exits 2 with one line", async () => {
  for (
    const args of [
      [],
      ["--nope", "ws://127.0.0.1:1/ws"],
      ["ftp://127.0.0.1/ws"],
      ["ws://a/ws", "ws://b/ws"],
      ["ws://127.0.0.1:1/ws", "--token", "not a jwt"],
    ]
  ) {
    const r = await runClient(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^hubbub connect: /);
  }
  const help = await runClient(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--reconnect/);
});

Deno.test("connect: a TLS port spoken to without trust exits 3", async () => {
  const { dir, cert, key } = await selfSigned();
  try {
    const listening = Promise.withResolvers<number>();
    const server = Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      cert: await Deno.readTextFile(cert),
      key: await Deno.readTextFile(key),
      onListen: ({ port }) => listening.resolve(port),
      // The failed handshakes are the point of the test.
      onError: () => new Response("error", { status: 500 }),
    }, () => new Response("not a socket", { status: 400 }));
    try {
      const port = await listening.promise;
      const r = await runClient([`wss://127.0.0.1:${port}/echo`]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(
        r.stderr,
        /^hubbub: cannot connect to .*TLS handshake failed: .*certificate/,
      );
    } finally {
      await server.shutdown();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connect: --token is offered as a bearer. subprotocol entry", async () => {
  const offers: string[] = [];
  const { server, port } = await serveLocal((req) => {
    offers.push(req.headers.get("sec-websocket-protocol") ?? "");
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (ev) => socket.send(ev.data);
    return response;
  });
  try {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    const echo = await runClient(
      [`ws://127.0.0.1:${port}/echo`, "--token", jwt],
      "hello\n",
    );
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout, "hello\n");
    await runClient([`ws://127.0.0.1:${port}/ws`, "--token", jwt]);
    assert.deepEqual(offers, [`bearer.${jwt}`, `hubbub.v1, bearer.${jwt}`]);
  } finally {
    await server.shutdown();
  }
});

/**
 * A server subprocess on a port picked by the test (to restart it on the
 * same one); another process on this shared machine may take a free port
 * between the pick and the listen, so a few picks are tried.
 */
async function spawnOnFreePort(
  args: string[],
  denoFlags?: string[],
): Promise<ServerProcess> {
  for (let tries = 1;; tries++) {
    try {
      return await spawnServer(
        ["--port", String(freePort()), ...args],
        denoFlags,
      );
    } catch (err) {
      if (tries === 3) throw err;
    }
  }
}

/**
 * Permissions of a server with a data file: those of `deno task start`.
 */
const DATA_PERMISSIONS = [
  "--allow-net",
  "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
  "--allow-read",
  "--allow-write",
];

/**
 * A `--reconnect --json` client across a kill -9 and restart of its server
 * (with `dataDir`, one keeping its history in a file there): what the client
 * printed, checked for duplicates, losses and reported gaps.
 */
async function reconnectAcrossKill(
  dataDir: string | null,
): Promise<
  {
    sent: number;
    received: number;
    duplicates: number;
    missing: string[];
    gaps: number;
  }
> {
  const room = "rec";
  const serverArgs = [
    "--rate-limit",
    "0",
    ...(dataDir ? ["--data", `${dataDir}/hubbub.db`] : []),
  ];
  const denoFlags = dataDir ? DATA_PERMISSIONS : undefined;
  let srv = await spawnOnFreePort(serverArgs, denoFlags);
  const port = srv.port;
  const client = spawnClient([
    `ws://127.0.0.1:${port}/ws?room=${room}`,
    "--json",
    "--reconnect",
    "--nick",
    "logger",
  ]);
  const sent: string[] = [];
  /** Sends `n` messages from a fresh writer and waits until the client shows them. */
  async function burst(tag: string, n: number) {
    const writer = await connect(
      `${srv.ws}/ws?room=${room}&name=writer`,
      JSON_SUBPROTOCOL,
    );
    await writer.waitLines(1);
    for (let i = 1; i <= n; i++) {
      const text = `${tag} ${i}`;
      sent.push(text);
      writer.send(JSON.stringify({ type: "message", text }));
    }
    await client.waitFor(new RegExp(`"text":"${tag} ${n}"`));
    await writer.close();
  }
  try {
    await client.waitFor(/"type":"welcome"/);
    await burst("before", 20);
    assert.equal((await srv.stop("SIGKILL")).signal, "SIGKILL");
    await client.waitFor(/connection dropped/);
    srv = await spawnServer(["--port", String(port), ...serverArgs], denoFlags);
    // Back in the room: its second welcome.
    await until(
      () =>
        client.lines().filter((l) => l.includes('"type":"welcome"')).length >=
          2,
      "the welcome after the restart",
    );
    await burst("after", 20);
    // The client's own lines go through too after the restart.
    await client.write("from the logger\n");
    sent.push("from the logger");
    await client.waitFor(/"text":"from the logger"/);
    await client.end();
    assert.equal((await client.exit()).code, 0, client.stderr());

    // Every chat message the client printed, from welcomes and live.
    const received: { epoch: string; seq: number; text: string }[] = [];
    let epoch = "";
    for (const line of client.lines()) {
      const o = JSON.parse(line);
      if (o.type === "welcome") {
        epoch = o.epoch;
        for (const m of o.history) received.push({ epoch, ...m });
      } else if (o.type === "message") received.push({ epoch, ...o });
    }
    const keys = received.map((m) => `${m.epoch}/${m.seq}`);
    const duplicates = keys.length - new Set(keys).size;
    const gaps = (client.stderr().match(/^! gap/gm) ?? []).length;
    const texts = received.map((m) => m.text);
    const missing = sent.filter((t) => !texts.includes(t));
    console.log(
      `reconnect run${dataDir ? " with --data" : ""}: sent ${sent.length}, ` +
        `received ${received.length}, duplicates ${duplicates}, ` +
        `gaps reported ${gaps}, missing ${missing.length}`,
    );
    return {
      sent: sent.length,
      received: received.length,
      duplicates,
      missing,
      gaps,
    };
  } finally {
    await client.exit("SIGKILL");
    assert.equal((await srv.stop()).code, 0);
  }
}

Deno.test("connect: --reconnect --json across kill -9 and restart: no duplicates, the gap reported", async () => {
  const run = await reconnectAcrossKill(null);
  assert.equal(run.duplicates, 0);
  assert.deepEqual(run.missing, []);
  assert.equal(run.received, run.sent);
  // Without --data the room's history started again: one gap, said once.
  assert.equal(run.gaps, 1);
});

Deno.test("connect: --reconnect --json across kill -9 and restart with --data: nothing lost, nothing twice, no gap", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-connect-data-" });
  try {
    const run = await reconnectAcrossKill(dir);
    assert.equal(run.duplicates, 0);
    assert.deepEqual(run.missing, []);
    assert.equal(run.received, run.sent);
    assert.equal(run.gaps, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connect: --reconnect does not retry a 4xx refusal", () =>
  withServer(async (srv) => {
    const r = await runClient([`${srv.ws}/ws?room=bad!`, "--reconnect"]);
    assert.equal(r.code, 4);
  }));

Deno.test("connect: deno task start connect URL reaches the client", () =>
  withServer(async (srv) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "start", "connect", `${srv.ws}/echo`],
      cwd: new URL("..", import.meta.url).pathname,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  }));

/**
 * A TCP relay to `port` that a test can cut (every relayed connection
 * dropped without a close frame) and block (new connections closed at once).
 */
function relay(port: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  let blocked = false;
  // Cutting a relayed connection errors its pipes: that is the point.
  const ignoreCut = (p: Promise<void>) =>
    pipes.push(p.catch((e) => {
      if (!(e instanceof Error)) throw e;
    }));
  const accepting = (async () => {
    for await (const conn of listener) {
      if (blocked) {
        conn.close();
        continue;
      }
      const up = await Deno.connect({ hostname: "127.0.0.1", port });
      open.add(conn).add(up);
      ignoreCut(conn.readable.pipeTo(up.writable));
      ignoreCut(up.readable.pipeTo(conn.writable));
    }
  })();
  return {
    port: listener.addr.port,
    set blocked(b: boolean) {
      blocked = b;
    },
    cut() {
      for (const c of open) {
        try {
          c.close();
        } catch (e) {
          if (!(e instanceof Deno.errors.BadResource)) throw e;
        }
      }
      open.clear();
    },
    async close() {
      this.cut();
      listener.close();
      await accepting.catch((e) => {
        if (!(e instanceof Deno.errors.BadResource)) throw e;
      });
      await Promise.all(pipes);
    },
  };
}

Deno.test("connect: --reconnect --json after a dropped link resumes with since: what was missed arrives once, no gap", () =>
  withServer(async (srv) => {
    const link = relay(srv.port);
    const client = spawnClient([
      `ws://127.0.0.1:${link.port}/ws?room=since`,
      "--json",
      "--reconnect",
    ]);
    const writer = await connect(
      `${srv.ws}/ws?room=since&name=w`,
      JSON_SUBPROTOCOL,
    );
    const say = async (text: string) => {
      writer.send(JSON.stringify({ type: "message", text }));
      await writer.waitFor(
        () => writer.lines.some((l) => l.includes(`"text":"${text}"`)),
        text,
      );
    };
    try {
      await client.waitFor(/"type":"welcome"/);
      for (let i = 1; i <= 5; i++) await say(`m ${i}`);
      await client.waitFor(/"text":"m 5"/);
      link.blocked = true;
      link.cut();
      await client.waitFor(/connection dropped/);
      for (let i = 6; i <= 10; i++) await say(`m ${i}`);
      link.blocked = false;
      await client.waitFor(/"text":"m 10"/);
      await client.end();
      assert.equal((await client.exit()).code, 0, client.stderr());
      const seqs: number[] = [];
      const resumed: number[][] = [];
      for (const line of client.lines()) {
        const o = JSON.parse(line);
        if (o.type === "welcome") {
          resumed.push(o.history.map((m: { seq: number }) => m.seq));
          seqs.push(...o.history.map((m: { seq: number }) => m.seq));
        }
        if (o.type === "message") seqs.push(o.seq);
      }
      assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // The link was blocked while 6-10 were sent: they came in the
      // welcome of the resumed connection (since=5), and nothing else did.
      assert.deepEqual(resumed.at(-1), [6, 7, 8, 9, 10]);
      assert.doesNotMatch(client.stderr(), /gap/);
      assert.match(client.stderr(), /reconnecting in/);
    } finally {
      await client.exit("SIGKILL");
      await writer.close();
      await link.close();
    }
  }));

Deno.test("connect: a 403 whose reason is streamed (chunked) still exits 4 with it", async () => {
  const { server, port } = await serveLocal(() =>
    new Response(
      ReadableStream.from([new TextEncoder().encode("origin not allowed\n")]),
      { status: 403 },
    )
  );
  try {
    const r = await runClient([`ws://127.0.0.1:${port}/ws`]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /HTTP 403 Forbidden: origin not allowed$/m);
  } finally {
    await server.shutdown();
  }
});
