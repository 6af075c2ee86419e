/**
 * One load process of `deno task bench`: opens its share of the clients,
 * lets some of them send on a fixed timetable, and records what every client
 * receives. It runs in its own process so that the load never shares the
 * server's event loop. Driven over stdin/stdout by `bench/main.ts`:
 *
 * - prints `ready` once every client is connected;
 * - on `go`, sends for the given seconds, then prints `sent N`;
 * - on `expect N` (messages sent by all loaders), waits until each client has
 *   N messages or the drain times out, and prints one JSON result line.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** What a load process reports at the end. */
export interface LoaderResult {
  received: number;
  /** Count of deliveries per whole millisecond of latency. */
  latencyMs: Record<string, number>;
  /** Deliveries in the measured window (after the warm-up). */
  windowReceived: number;
}

/** Without progress for this long, a drain gives up: the rest is lost. */
const DRAIN_IDLE_MS = 1500;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    url: { type: "string" },
    clients: { type: "string" },
    senders: { type: "string" },
    "sender-base": { type: "string", default: "0" },
    rate: { type: "string" },
    duration: { type: "string" },
    warmup: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
  },
});
const url = values.url!;
const clientCount = Number(values.clients);
const senderCount = Number(values.senders);
const senderBase = Number(values["sender-base"]);
const rate = Number(values.rate);
const durationMs = Number(values.duration) * 1000;
const warmupMs = Number(values.warmup) * 1000;
const json = values.json;

const now = () => performance.timeOrigin + performance.now();
const latency = new Map<number, number>();
let received = 0;
let windowReceived = 0;
let windowStart = Infinity;
let windowEnd = Infinity;
const perClient = new Array<number>(clientCount).fill(0);
let lastProgress = now();

function onFrame(i: number, data: string): void {
  const t = now();
  let at = data.indexOf("LG|");
  while (at !== -1) {
    const stampStart = data.indexOf("|", data.indexOf("|", at + 3) + 1) + 1;
    const stampEnd = data.indexOf("|", stampStart);
    const sentAt = Number(data.slice(stampStart, stampEnd));
    const ms = Math.max(0, Math.floor(t - sentAt));
    latency.set(ms, (latency.get(ms) ?? 0) + 1);
    received++;
    perClient[i]++;
    if (sentAt >= windowStart && sentAt < windowEnd) windowReceived++;
    at = data.indexOf("LG|", stampEnd);
  }
  lastProgress = t;
}

const sockets: WebSocket[] = [];
const CONNECT_BATCH = 100;
for (let start = 0; start < clientCount; start += CONNECT_BATCH) {
  const batch: Promise<void>[] = [];
  for (let i = start; i < Math.min(clientCount, start + CONNECT_BATCH); i++) {
    const ws = json ? new WebSocket(url, "hubbub.v1") : new WebSocket(url);
    sockets.push(ws);
    ws.onmessage = (ev) => onFrame(i, ev.data);
    batch.push(
      new Promise((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error(`client ${i} failed to connect`));
      }),
    );
  }
  await Promise.all(batch);
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  .getReader();
let buffered = "";
async function nextCommand(): Promise<string> {
  while (!buffered.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error("orchestrator went away");
    buffered += value;
  }
  const at = buffered.indexOf("\n");
  const line = buffered.slice(0, at);
  buffered = buffered.slice(at + 1);
  return line;
}

console.log("ready");
await nextCommand();

let sent = 0;
const start = now();
windowStart = start + warmupMs;
windowEnd = start + durationMs;
const interval = 1000 / rate;
const pad = "x".repeat(64);
await new Promise<void>((resolve) => {
  const seq = new Array<number>(senderCount).fill(0);
  const tick = () => {
    const t = now();
    if (t >= windowEnd) return resolve();
    // Catch up on the timetable: each sender owes floor(elapsed / interval).
    const due = Math.floor((t - start) / interval) + 1;
    for (let s = 0; s < senderCount; s++) {
      while (seq[s] < due) {
        const scheduled = start + seq[s] * interval;
        const payload = `LG|${senderBase + s}|${seq[s]++}|${scheduled}|`;
        const text = (payload + pad).slice(0, Math.max(64, payload.length));
        sockets[s].send(
          json ? JSON.stringify({ type: "message", text }) : text,
        );
        sent++;
      }
    }
    setTimeout(tick, Math.max(0, start + due * interval - now()));
  };
  tick();
});
console.log(`sent ${sent}`);

const expected = Number((await nextCommand()).split(" ")[1]);
while (
  perClient.some((n) => n < expected) &&
  now() - lastProgress < DRAIN_IDLE_MS
) {
  await new Promise((r) => setTimeout(r, 50));
}
const result: LoaderResult = {
  received,
  windowReceived,
  latencyMs: Object.fromEntries(latency),
};
console.log(JSON.stringify(result));
await Promise.all(sockets.map((ws) =>
  new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.onclose = () => resolve();
    ws.close();
  })
));
Deno.exit(0);
