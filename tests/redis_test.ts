/**
 * Scale-out through Redis: several instances, each with its own clients,
 * behave as one chat. Each test starts its own redis-server on a free
 * loopback port and skips (saying why) when it is not installed.
 */
import assert from "node:assert/strict";
import { createClient } from "redis";
import { type Logger, silentLogger } from "../log.ts";
import type { HubbubOptions } from "../mod.ts";
import { LARGE_ROOM } from "../hub.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import { RedisBus } from "../redis_bus.ts";
import {
  closeAll,
  connect,
  connectMany,
  joinJson,
  range,
  spawnServer,
  startServer,
  type TestServer,
  type TestSocket,
  until,
  within,
} from "./helpers.ts";
import { redisMissing, type RedisServer, startRedis } from "./redis_helpers.ts";

type Msg = Record<string, unknown>;

const missing = redisMissing();
if (missing) console.log(`skipping Redis tests: ${missing}`);

/** Runs `fn` with a fresh Redis and `n` instances joined through it. */
function withCluster(
  n: number,
  fn: (redis: RedisServer, nodes: TestServer[]) => Promise<void>,
  options: HubbubOptions = {},
): () => Promise<void> {
  return async () => {
    const redis = await startRedis();
    const nodes: TestServer[] = [];
    try {
      for (let i = 0; i < n; i++) {
        nodes.push(await startServer({ ...options, redis: redis.url }));
      }
      for (const node of nodes) await linkUp(node);
      await fn(redis, nodes);
    } finally {
      for (const node of nodes) await node.close();
      await redis.stop();
    }
  };
}

/** Waits until the instance's /healthz says `status`. */
async function health(node: TestServer, status: string): Promise<void> {
  await until(async () => {
    const res = await fetch(`${node.http}/healthz`);
    const body = await res.json();
    return body.status === status;
  }, `healthz ${status}`);
}

function linkUp(node: TestServer): Promise<void> {
  return health(node, "ok");
}

function chats(s: TestSocket): Msg[] {
  return s.messages.filter((m) => m.type === "message");
}

function say(s: TestSocket, text: string, json: boolean): void {
  s.send(json ? JSON.stringify({ type: "message", text }) : text);
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: missing !== null, fn });

for (const n of [2, 3]) {
  test(
    `redis: ${n} instances, plain and JSON clients: one order, same seqs`,
    withCluster(n, async (_redis, nodes) => {
      const plain: TestSocket[] = [];
      const json: TestSocket[] = [];
      for (const node of nodes) {
        json.push(await joinJson(node, "?room=one"));
        plain.push(await connect(`${node.ws}/ws?room=one`));
      }
      const perClient = 20;
      const texts: string[] = [];
      for (let i = 0; i < perClient; i++) {
        for (const [k, s] of json.entries()) {
          texts.push(`j${k}-${i}`);
          say(s, `j${k}-${i}`, true);
        }
        for (const [k, s] of plain.entries()) {
          texts.push(`p${k}-${i}`);
          say(s, `p${k}-${i}`, false);
        }
      }
      const total = texts.length;
      for (const s of plain) await s.waitLines(total);
      for (const s of json) {
        await s.waitFor(() => chats(s).length >= total, `${total} messages`);
      }
      const order = plain[0].lines;
      assert.deepEqual([...order].sort(), [...texts].sort(), "every message");
      for (const s of plain) assert.deepEqual(s.lines, order, "plain order");
      for (const s of json) {
        const got = chats(s);
        assert.deepEqual(got.map((m) => m.text), order, "JSON order");
        assert.deepEqual(
          got.map((m) => m.seq),
          order.map((_, i) => i + 1),
          "seqs 1..N everywhere",
        );
      }
      await closeAll([...plain, ...json]);
    }),
  );
}

test(
  "redis: a client reconnecting to another instance gets exactly what it missed",
  withCluster(2, async (_redis, [a, b]) => {
    const talker = await joinJson(b, "?room=rec&name=talker");
    const ja = await joinJson(a, "?room=rec&name=ja");
    for (let i = 1; i <= 3; i++) say(talker, `m${i}`, true);
    await ja.waitFor(() => chats(ja).length === 3, "3 messages on a");
    const epoch = ja.messages[0].epoch;
    await ja.close();
    // More than --history (5): the welcome reaches back into the stream.
    for (let i = 4; i <= 15; i++) say(talker, `m${i}`, true);
    await talker.waitFor(() => chats(talker).length === 15, "15 messages");
    let last = 15;
    for (const node of [b, a]) {
      const back = await joinJson(node, `?room=rec&since=3&epoch=${epoch}`);
      const w = back.messages[0];
      assert.equal(w.type, "welcome");
      assert.equal(w.epoch, epoch);
      assert.equal(w.gap, false);
      assert.equal(w.seq, last);
      // At most --history in the welcome; the rest follow it as messages.
      const history = w.history as Msg[];
      assert.deepEqual(history.map((m) => m.seq), range(4, 8));
      await back.waitFor(() => chats(back).length === last - 8, "the rest");
      const missed = [...history, ...chats(back)];
      assert.deepEqual(missed.map((m) => m.seq), range(4, last));
      assert.deepEqual(
        missed.map((m) => m.text),
        range(4, last).map((i) => `m${i}`),
      );
      // And it is live from there on: the next message, once.
      last++;
      say(talker, `m${last}`, true);
      await back.waitFor(() => chats(back).length === last - 8, `m${last}`);
      assert.deepEqual(chats(back).map((m) => m.seq), range(9, last));
      await back.close();
    }
    await talker.close();
  }, { history: 5 }),
);

/** Sends a `history` request and waits for its answer (history or error). */
async function ask(s: TestSocket, request: Msg): Promise<Msg> {
  const answers = () =>
    s.messages.filter((m) => m.type === "history" || m.type === "error");
  const before = answers().length;
  s.send(JSON.stringify({ type: "history", ...request }));
  await s.waitFor(() => answers().length > before, "history answer");
  return answers()[before];
}

test(
  "redis: scrollback on another instance pages through the room's stream",
  withCluster(2, async (redis, [a, b]) => {
    const talker = await joinJson(a, "?room=scroll&name=talker");
    for (let i = 1; i <= 30; i++) say(talker, `s${i}`, true);
    await talker.waitFor(() => chats(talker).length === 30, "30 messages");
    const reader = await joinJson(b, "?room=scroll&name=reader");
    const w = reader.messages[0];
    assert.deepEqual((w.history as Msg[]).map((m) => m.seq), range(26, 30));
    // Paging back from the welcome's oldest seq, as a client does.
    const pages: Msg[] = [];
    for (let before = 26;;) {
      const page = await ask(reader, { before, limit: 10 });
      assert.equal(page.type, "history", JSON.stringify(page));
      assert.equal(page.room, "scroll");
      assert.equal(page.epoch, w.epoch);
      pages.push(page);
      if (!page.more) break;
      before = (page.messages as Msg[])[0].seq as number;
    }
    assert.equal(pages.length, 3, "pages of 10, 10 and 5");
    const older = pages.toReversed().flatMap((p) => p.messages as Msg[]);
    assert.deepEqual(older.map((m) => m.seq), range(1, 25));
    assert.deepEqual(
      older.map((m) => m.text),
      range(1, 25).map((i) => `s${i}`),
    );
    // Without `before`, and with one past the room's end: the newest page
    // this instance delivered, nothing it has not.
    for (const request of [{ limit: 3 }, { before: 1000, limit: 3 }]) {
      const page = await ask(reader, request);
      assert.deepEqual((page.messages as Msg[]).map((m) => m.seq), [
        28,
        29,
        30,
      ]);
      assert.equal(page.more, true);
    }
    // The answer follows the reader's own lines in order: the error for a
    // bad nick sent before the request arrives before the page.
    reader.send(JSON.stringify({ type: "nick", name: " " }));
    reader.send(JSON.stringify({ type: "history", before: 3, limit: 5 }));
    const pageCount = () =>
      reader.messages.filter((m) => m.type === "history").length;
    await reader.waitFor(() => pageCount() === pages.length + 3, "page");
    const kinds = reader.messages.map((m) => m.type);
    assert.ok(
      kinds.lastIndexOf("error") >= 0 &&
        kinds.lastIndexOf("error") < kinds.lastIndexOf("history"),
      kinds.join(","),
    );
    const page = reader.messages.findLast((m) => m.type === "history")!;
    assert.deepEqual((page.messages as Msg[]).map((m) => m.seq), [1, 2]);
    assert.equal(page.more, false);
    // Redis gone: the request is answered, with an error.
    await redis.stop();
    const failed = await ask(reader, { before: 10, limit: 5 });
    assert.equal(failed.type, "error");
    assert.equal(failed.code, "history_unavailable");
    // Back up before the instances close, so no reconnect timer outlives them.
    await redis.restart();
    await linkUp(a);
    await linkUp(b);
    await closeAll([talker, reader]);
  }, { history: 5 }),
);

test(
  "redis: subscriber killed while messages flow: gap filled, nothing lost or twice",
  withCluster(2, async (redis, [a, b]) => {
    const sender = await connect(`${a.ws}/ws?room=kill`);
    const jsonReaders = [
      await joinJson(a, "?room=kill"),
      await joinJson(b, "?room=kill"),
    ];
    const plainReader = await connect(`${b.ws}/ws?room=kill`);
    const admin = createClient({ url: redis.url });
    await admin.connect();
    try {
      const total = 300;
      for (let i = 1; i <= total; i++) {
        say(sender, `k${i}`, false);
        if (i % 100 === 0) {
          const killed = await admin.sendCommand([
            "CLIENT",
            "KILL",
            "TYPE",
            "pubsub",
          ]);
          assert.ok(Number(killed) >= 2, `killed ${killed} subscribers`);
        }
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      const want = range(1, total).map((i) => `k${i}`);
      await sender.waitLines(total);
      assert.deepEqual(sender.lines, want);
      for (const r of jsonReaders) {
        await r.waitFor(() => chats(r).length >= total, `${total} on JSON`);
        assert.deepEqual(chats(r).map((m) => m.text), want);
        assert.deepEqual(chats(r).map((m) => m.seq), range(1, total));
      }
      await plainReader.waitLines(total);
      assert.deepEqual(plainReader.lines, want);
      const metrics = await (await fetch(`${a.http}/metrics`)).text();
      assert.match(metrics, /hubbub_redis_reconnects_total [1-9]/);
      await closeAll([sender, plainReader, ...jsonReaders]);
    } finally {
      await admin.close();
    }
  }),
);

const outageLog: string[] = [];
const outageLogger: Logger = {
  log(level, msg, fields) {
    if (/redis|room/.test(msg)) {
      outageLog.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
    }
  },
};

test(
  "redis: restarted without persistence: senders told meanwhile, then a new epoch",
  withCluster(2, async (redis, [a, b]) => {
    const ja = await joinJson(a, "?room=out&name=ja");
    const pa = await connect(`${a.ws}/ws?room=out`);
    const jb = await joinJson(b, "?room=out&name=jb");
    const pb = await connect(`${b.ws}/ws?room=out`);
    const oldEpoch = ja.messages[0].epoch;
    for (let i = 1; i <= 5; i++) say(jb, `before${i}`, true);
    for (const s of [ja, jb]) {
      await s.waitFor(() => chats(s).length === 5, "5 before");
    }
    for (const s of [pa, pb]) await s.waitLines(5);

    await redis.stop();
    await health(a, "degraded");
    const res = await fetch(`${a.http}/healthz`);
    assert.equal(res.status, 503);
    assert.equal((await res.json()).redis, "down");
    say(ja, "during", true);
    await ja.waitFor(
      () => ja.messages.some((m) => m.type === "error"),
      "error",
    );
    const err = ja.messages.find((m) => m.type === "error")!;
    assert.equal(err.code, "unavailable");
    say(pa, "during", false);
    const closed = await pa.closed;
    assert.equal(closed.code, 1013);

    await redis.restart();
    await linkUp(a);
    await linkUp(b);
    say(ja, "after", true);
    for (const s of [ja, jb]) {
      await s.waitFor(() => chats(s).length === 6, "after");
      const tail = s.messages.filter((m) =>
        m.type === "epoch" || m.type === "message"
      ).slice(-2);
      assert.equal(tail[0].type, "epoch");
      assert.notEqual(tail[0].epoch, oldEpoch);
      assert.equal(tail[0].seq, 0);
      assert.deepEqual([tail[1].text, tail[1].seq], ["after", 1]);
      assert.deepEqual(
        chats(s).map((m) => m.text),
        [1, 2, 3, 4, 5].map((i) => `before${i}`).concat("after"),
      );
    }
    await pb.waitLines(6);
    assert.equal(pb.lines[5], "after");
    const after = await (await fetch(`${a.http}/healthz`)).json();
    console.log("outage test: healthz after restart", JSON.stringify(after));
    const metrics = await (await fetch(`${a.http}/metrics`)).text();
    console.log(metrics.split("\n").filter((l) => /^hubbub_redis/.test(l)));
    for (const line of outageLog) console.log("outage test log:", line);
    // One line per change of the link's state, not one per failed attempt.
    const count = (msg: string) =>
      outageLog.filter((l) => l.includes(msg)).length;
    assert.equal(count("redis link down"), 2, "one per instance");
    assert.equal(count("redis link up"), 4, "twice per instance");
    await closeAll([ja, jb, pb]);
  }, { logger: outageLogger }),
);

test(
  "redis: presence covers every instance; a leave reaches the others",
  withCluster(2, async (_redis, [a, b]) => {
    const ja = await joinJson(a, "?room=pres&name=alice");
    const jb = await joinJson(b, "?room=pres&name=bob");
    assert.deepEqual(jb.messages[0].members, ["bob", "alice"]);
    assert.equal(jb.messages[0].memberCount, 2);
    await ja.waitFor(
      () => ja.messages.some((m) => m.type === "join" && m.name === "bob"),
      "bob's join on a",
    );
    ja.send(JSON.stringify({ type: "who" }));
    await ja.waitFor(
      () => ja.messages.some((m) => m.type === "presence"),
      "presence",
    );
    const presence = ja.messages.find((m) => m.type === "presence")!;
    assert.deepEqual(presence.members, ["alice", "bob"]);
    jb.send(JSON.stringify({ type: "nick", name: "robert" }));
    await ja.waitFor(
      () => ja.messages.some((m) => m.type === "nick" && m.name === "robert"),
      "nick on a",
    );
    await jb.close();
    await ja.waitFor(
      () => ja.messages.some((m) => m.type === "leave" && m.name === "robert"),
      "leave on a",
    );
    await ja.close();
  }),
);

test(
  "redis: an instance killed with kill -9 leaves everyone's presence",
  withCluster(1, async (redis, [a]) => {
    const doomed = await spawnServer([
      "--port",
      "0",
      "--redis",
      redis.url,
      "--redis-presence-ttl",
      "1.5",
    ]);
    try {
      const ja = await joinJson(a, "?room=dead&name=alice");
      const victim = await connect(
        `${doomed.ws}/ws?room=dead&name=victim`,
        JSON_SUBPROTOCOL,
      );
      await ja.waitFor(
        () => ja.messages.some((m) => m.type === "join" && m.name === "victim"),
        "victim's join",
      );
      const killedAt = Date.now();
      await doomed.stop("SIGKILL");
      await ja.waitFor(
        () =>
          ja.messages.some((m) => m.type === "leave" && m.name === "victim"),
        "victim's leave after kill -9",
      );
      console.log(`kill -9: leave announced after ${Date.now() - killedAt} ms`);
      ja.send(JSON.stringify({ type: "who" }));
      await ja.waitFor(
        () => ja.messages.some((m) => m.type === "presence"),
        "presence",
      );
      assert.deepEqual(
        ja.messages.find((m) => m.type === "presence")!.members,
        ["alice"],
      );
      await victim.closed;
      await ja.close();
    } finally {
      await doomed.stop("SIGKILL");
    }
  }, { redisPresenceTtl: 1.5 }),
);

test(
  "redis: scrollback reads the stream, whichever instance wrote it",
  withCluster(2, async (redis, [a]) => {
    const talker = await joinJson(a, "?room=back");
    for (let i = 1; i <= 10; i++) say(talker, `s${i}`, true);
    await talker.waitFor(() => chats(talker).length === 10, "10 messages");
    const epoch = talker.messages[0].epoch;
    // A bus of its own stands for another instance.
    const other = new RedisBus({
      url: redis.url,
      history: 5,
      historyMax: 100,
      presenceTtlMs: 3000,
      logger: silentLogger,
      accepted() {},
    });
    try {
      const page = await other.before("back", 8, 3);
      assert.deepEqual(page.records.map((r) => r.text), ["s5", "s6", "s7"]);
      assert.equal(page.epoch, epoch);
      assert.equal(page.more, true);
      const first = await other.before("back", 3, 5);
      assert.deepEqual(first.records.map((r) => r.seq), [1, 2]);
      assert.equal(first.more, false);
    } finally {
      await other.close();
    }
    await talker.close();
  }),
);

test(
  "redis: joins while messages flow: history and live delivery meet exactly",
  withCluster(2, async (_redis, [a, b]) => {
    const talker = await connect(`${a.ws}/ws?room=flow`);
    let sending = true;
    const sent = (async () => {
      for (let i = 1; sending && i <= 2000; i++) {
        say(talker, `f${i}`, false);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    try {
      // Each joiner is alone on b, so each join loads the room afresh.
      for (let j = 0; j < 8; j++) {
        const s = await joinJson(b, "?room=flow");
        await s.waitFor(() => chats(s).length >= 5, "some live messages");
        await s.close();
        const w = s.messages[0];
        const seqs = [
          ...(w.history as Msg[]).map((m) => m.seq as number),
          ...chats(s).map((m) => m.seq as number),
        ];
        const first = seqs[0];
        assert.deepEqual(
          seqs,
          range(first, first + seqs.length - 1),
          `joiner ${j}: contiguous, welcome seq ${w.seq}`,
        );
        assert.equal(
          (w.history as Msg[]).at(-1)?.seq ?? w.seq,
          w.seq,
          "history ends at the welcome's seq",
        );
      }
    } finally {
      sending = false;
      await sent;
      await talker.close();
    }
  }, { history: 20 }),
);

test(
  "redis: the large-room rule counts the members of every instance",
  withCluster(2, async (_redis, [a, b]) => {
    const jb = await joinJson(b, "?room=big&name=watcher");
    const jw = await joinJson(a, "?room=big&name=watcher-a");
    const crowd = [
      ...await connectMany(`${a.ws}/ws?room=big`, LARGE_ROOM / 2 - 1),
      ...await connectMany(`${b.ws}/ws?room=big`, LARGE_ROOM / 2 - 1),
    ];
    try {
      // Until each instance lists the other's members: presence travels
      // through Redis, and each instance learns of the other on its own.
      for (const watcher of [jb, jw]) {
        const presences = () =>
          watcher.messages.filter((m) => m.type === "presence");
        await until(async () => {
          const before = presences().length;
          watcher.send(JSON.stringify({ type: "who" }));
          await watcher.waitFor(() => presences().length > before, "presence");
          return (presences().at(-1)!.members as string[]).length ===
            LARGE_ROOM;
        }, `${LARGE_ROOM} members listed by ${watcher === jb ? "b" : "a"}`);
      }
      const ja = await joinJson(a, "?room=big&name=newcomer");
      const w = ja.messages[0];
      assert.equal(w.memberCount, LARGE_ROOM + 1);
      assert.deepEqual(w.members, ["newcomer"]);
      say(ja, "hello crowd", true);
      await jb.waitFor(
        () => chats(jb).some((m) => m.text === "hello crowd"),
        "the newcomer's message",
      );
      assert.ok(
        !jb.messages.some((m) => m.type === "join" && m.name === "newcomer"),
        "no join announced above the limit",
      );
      await ja.close();
    } finally {
      await closeAll([jb, jw, ...crowd]);
    }
  }),
);

test("redis: a password in the URL; a wrong one is degraded, and says why", async () => {
  const redis = await startRedis(undefined, ["--requirepass", "s3cret"]);
  const lines: string[] = [];
  const logger: Logger = {
    log: (level, msg, fields) =>
      lines.push(`${level} ${msg} ${JSON.stringify(fields)}`),
  };
  const port = redis.url.split(":").at(-1);
  const good = await startServer({
    redis: `redis://:s3cret@127.0.0.1:${port}`,
  });
  const bad = await startServer({
    redis: `redis://:wrong@127.0.0.1:${port}`,
    logger,
  });
  try {
    await linkUp(good);
    await health(bad, "degraded");
    const down = lines.find((l) => l.includes("redis link down"));
    assert.ok(down?.includes("WRONGPASS"), down);
    assert.ok(!down?.includes("wrong@"), "the password is not logged");
  } finally {
    await good.close();
    await bad.close();
    await redis.stop();
  }
});

test(
  "redis: a socket closed while its room loads (early flood) is not joined when the load finishes",
  withCluster(1, async (redis, [a]) => {
    const admin = createClient({ url: redis.url });
    await admin.connect();
    let flooder: TestSocket | null = null;
    let timer: ReturnType<typeof setInterval> | undefined;
    try {
      // Holds every Redis command, so the room's load waits.
      await admin.sendCommand(["CLIENT", "PAUSE", "1000", "ALL"]);
      flooder = await connect(`${a.ws}/ws?room=early`, JSON_SUBPROTOCOL);
      const frame = JSON.stringify({ type: "who" });
      for (let i = 0; i < 100; i++) flooder.send(frame);
      // Not quiet: the server's close waits (up to 2 s, closing.ts), past
      // the pause, with the socket still open.
      timer = setInterval(() => flooder!.send(frame), 50);
      const closed = await within(flooder.closed, "the flooder closed");
      clearInterval(timer);
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, "too many messages before joining");
      assert.deepEqual(flooder.lines, [], "nothing sent to it, no welcome");
      const next = await joinJson(a, "?room=early");
      assert.equal(next.messages[0].type, "welcome");
      assert.equal(next.messages[0].memberCount, 1);
      await next.close();
    } finally {
      clearInterval(timer);
      await flooder?.close();
      await admin.close();
    }
  }),
);
