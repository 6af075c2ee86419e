/**
 * Scale-out through Redis: several instances, each with its own clients,
 * behave as one chat. Each test starts its own redis-server on a free
 * loopback port and skips (saying why) when it is not installed.
 */
import assert from "node:assert/strict";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  closeAll,
  connect,
  startServer,
  type TestServer,
  type TestSocket,
  until,
} from "./helpers.ts";
import { redisMissing, type RedisServer, startRedis } from "./redis_helpers.ts";

type Msg = Record<string, unknown>;

const missing = redisMissing();
if (missing) console.log(`skipping Redis tests: ${missing}`);

/** Runs `fn` with a fresh Redis and `n` instances joined through it. */
function withCluster(
  n: number,
  fn: (redis: RedisServer, nodes: TestServer[]) => Promise<void>,
): () => Promise<void> {
  return async () => {
    const redis = await startRedis();
    const nodes: TestServer[] = [];
    try {
      for (let i = 0; i < n; i++) {
        nodes.push(await startServer({ redis: redis.url }));
      }
      for (const node of nodes) await linkUp(node);
      await fn(redis, nodes);
    } finally {
      for (const node of nodes) await node.close();
      await redis.stop();
    }
  };
}

/** Waits until the instance's /healthz says its Redis link is up. */
async function linkUp(node: TestServer): Promise<void> {
  await until(async () => {
    const res = await fetch(`${node.http}/healthz`);
    const body = await res.json();
    return body.status === "ok";
  }, "redis link up");
}

async function joinJson(node: TestServer, query: string): Promise<TestSocket> {
  const s = await connect(`${node.ws}/ws${query}`, JSON_SUBPROTOCOL);
  await s.waitFor(() => s.lines.length > 0, "welcome");
  return s;
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
