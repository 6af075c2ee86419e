/**
 * `deno task bench`: starts a hubbub server, drives it from separate load
 * processes (`bench/loader.ts`) and prints one table row per run with the
 * columns of the side-by-side harness in `../shared/bench/`. A benchmark,
 * not a test: nothing here asserts on time.
 *
 * `--redis N` starts a throwaway `redis-server` and N instances joined
 * through it, the loaders spread over them; the CPU column then adds up the
 * instances, and Redis's own CPU is printed apart.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LoaderResult } from "./loader.ts";
import { memory } from "./memory.ts";
import { cpuSeconds } from "./cpu.ts";
import { spawnRedis } from "./redis_server.ts";
import { type BenchServer, NO_LIMITS, startServer } from "./server.ts";

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    clients: { type: "string", default: "1000" },
    senders: { type: "string", default: "10" },
    rate: { type: "string", default: "100" },
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    idle: { type: "string", default: "1000" },
    loaders: { type: "string", default: "2" },
    json: { type: "boolean", default: false },
    data: { type: "boolean", default: false },
    "data-sync": { type: "string", default: "normal" },
    redis: { type: "string", default: "0" },
  },
});
const instances = Math.max(1, Number(values.redis));
const withRedis = Number(values.redis) > 0;
const clients = Number(values.clients);
const senders = Number(values.senders);
const rate = Number(values.rate);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const idleClients = Number(values.idle);
const loaderCount = Math.max(1, Math.min(Number(values.loaders), clients));

const root = new URL("..", import.meta.url).pathname;

/** A child process spoken to by lines over stdin/stdout. */
class LineProcess {
  readonly child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #buffer = "";

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#reader = this.child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    this.#writer = this.child.stdin.getWriter();
  }

  async line(): Promise<string> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("process ended early");
      this.#buffer += value;
    }
    const at = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, at);
    this.#buffer = this.#buffer.slice(at + 1);
    return line;
  }

  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  async finish(): Promise<void> {
    await this.#writer.close();
    await this.#reader.cancel();
    await this.child.status;
  }
}

if (values.data && withRedis) {
  console.error("bench: --data and --redis cannot be used together");
  Deno.exit(2);
}

/** With `--data`: a fresh database in a temporary directory, removed after. */
const dataDir = values.data
  ? await Deno.makeTempDir({ prefix: "hubbub-bench-" })
  : null;

function percentile(
  hist: Map<number, number>,
  total: number,
  p: number,
): number {
  let seen = 0;
  for (const ms of [...hist.keys()].sort((a, b) => a - b)) {
    seen += hist.get(ms)!;
    if (seen >= total * p) return ms;
  }
  return NaN;
}

/** Messages the instances accepted from clients, from their /metrics. */
async function accepted(ports: number[]): Promise<number> {
  let total = 0;
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`))
      .text();
    const m = text.match(/^hubbub_messages_received_total (\d+)/m);
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

/** Runs the loaders for one fan-out measurement. */
async function fanout(ports: number[], pids: number[], redisPid?: number) {
  const loaders: LineProcess[] = [];
  let senderBase = 0;
  for (let i = 0; i < loaderCount; i++) {
    const share = Math.floor(clients / loaderCount) +
      (i < clients % loaderCount ? 1 : 0);
    const sendShare = Math.floor(senders / loaderCount) +
      (i < senders % loaderCount ? 1 : 0);
    loaders.push(
      new LineProcess([
        "run",
        "--allow-net",
        `${root}bench/loader.ts`,
        `--url=ws://127.0.0.1:${ports[i % ports.length]}/ws`,
        `--clients=${share}`,
        `--senders=${sendShare}`,
        `--sender-base=${senderBase}`,
        `--rate=${rate}`,
        `--duration=${duration + warmup}`,
        `--warmup=${warmup}`,
        ...(values.json ? ["--json"] : []),
      ]),
    );
    senderBase += sendShare;
  }
  for (const l of loaders) await l.line(); // ready
  const cpuBefore = await cpuSeconds(pids);
  const redisBefore = redisPid ? await cpuSeconds([redisPid]) : 0;
  const acceptedBefore = await accepted(ports);
  const startedAt = performance.now();
  for (const l of loaders) await l.send("go");
  let peak = 0;
  const sampler = setInterval(async () => {
    let rss = 0;
    for (const pid of pids) rss += (await memory(pid)).rss;
    peak = Math.max(peak, rss);
  }, 200);
  let sent = 0;
  for (const l of loaders) sent += Number((await l.line()).split(" ")[1]);
  const sendingSeconds = (performance.now() - startedAt) / 1000;
  const acceptedAfter = await accepted(ports);
  for (const l of loaders) await l.send(`expect ${sent}`);
  const results: LoaderResult[] = [];
  for (const l of loaders) results.push(JSON.parse(await l.line()));
  clearInterval(sampler);
  const elapsed = (performance.now() - startedAt) / 1000;
  const cpu = (await cpuSeconds(pids)) - cpuBefore;
  const redisCpu = redisPid ? (await cpuSeconds([redisPid])) - redisBefore : 0;
  await Promise.all(loaders.map((l) => l.finish()));
  const hist = new Map<number, number>();
  let received = 0;
  let windowReceived = 0;
  for (const r of results) {
    received += r.received;
    windowReceived += r.windowReceived;
    for (const [ms, n] of Object.entries(r.latencyMs)) {
      hist.set(Number(ms), (hist.get(Number(ms)) ?? 0) + n);
    }
  }
  return {
    delivered: windowReceived / duration,
    p50: percentile(hist, received, 0.5),
    p99: percentile(hist, received, 0.99),
    lost: sent * clients - received,
    peak,
    /** Server CPU, all instances, as a share of one core over the run. */
    cpu: cpu / elapsed,
    redisCpu: redisCpu / elapsed,
    acceptedPerSecond: (acceptedAfter - acceptedBefore) / sendingSeconds,
  };
}

/** Connects idle clients from one loader and measures the server's RSS growth. */
async function idle(port: number, pid: number): Promise<number> {
  const before = (await memory(pid)).rss;
  const loader = new LineProcess([
    "run",
    "--allow-net",
    `${root}bench/loader.ts`,
    `--url=ws://127.0.0.1:${port}/ws?room=idle`,
    `--clients=${idleClients}`,
    "--senders=0",
    "--rate=1",
    "--duration=0",
  ]);
  await loader.line(); // ready
  await new Promise((r) => setTimeout(r, 1000));
  const after = (await memory(pid)).rss;
  await loader.send("go");
  await loader.line(); // sent 0
  await loader.send("expect 0");
  await loader.line();
  await loader.finish();
  return (after - before) / idleClients;
}

/** With `--data`: how many history commits the run made and their mean time. */
async function commitStats(port: number): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (name: string) =>
    Number(text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
  const count = value("hubbub_history_write_seconds_count");
  const sum = value("hubbub_history_write_seconds_sum");
  const rows = value("hubbub_history_stored_messages");
  return `history commits: ${count}, mean ${
    (sum / count * 1e6).toFixed(0)
  } µs, ${(rows / count).toFixed(1)} messages per commit`;
}

const redis = withRedis ? await spawnRedis() : null;
const serverArgs = [
  ...(dataDir
    ? [`--data=${dataDir}/bench.db`, `--data-sync=${values["data-sync"]}`]
    : []),
  ...NO_LIMITS,
  ...(redis ? [`--redis=${redis.url}`] : []),
];
const servers: BenchServer[] = [];
try {
  for (let i = 0; i < instances; i++) {
    servers.push(
      await startServer({ args: serverArgs, dataDir, stderr: "inherit" }),
    );
  }
  const ports = servers.map((s) => s.port);
  const pids = servers.map((s) => s.pid);
  const perConn = idleClients > 0 ? await idle(ports[0], pids[0]) : NaN;
  const r = await fanout(ports, pids, redis?.pid);
  const mode = (values.json ? "json" : "plain") +
    (withRedis ? ` redis×${instances}` : "") +
    (dataDir ? `+data(${values["data-sync"]})` : "");
  console.log(
    "| mode | clients | senders | offered msg/s | delivered msgs/s | p50 ms | p99 ms | lost | server peak RSS MB | RSS/idle conn KB | accepted msg/s | server CPU % |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  console.log(
    `| ${mode} | ${clients} | ${senders} | ${senders * rate} | ${
      Math.round(r.delivered)
    } | ${r.p50} | ${r.p99} | ${r.lost} | ${(r.peak / 2 ** 20).toFixed(1)} | ${
      (perConn / 1024).toFixed(1)
    } | ${Math.round(r.acceptedPerSecond)} | ${Math.round(r.cpu * 100)} |`,
  );
  if (dataDir) console.log(await commitStats(servers[0].port));
  if (redis) {
    console.log(
      `redis-server CPU: ${Math.round(r.redisCpu * 100)} % of a core`,
    );
  }
} finally {
  for (const server of servers) await server.stop();
  if (redis) await redis.stop();
  if (dataDir) await Deno.remove(dataDir, { recursive: true });
}
