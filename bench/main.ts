/**
 * `deno task bench`: starts a hubbub server, drives it from separate load
 * processes (`bench/loader.ts`) and prints one table row per run with the
 * columns of the side-by-side harness in `../shared/bench/`. A benchmark,
 * not a test: nothing here asserts on time.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { LoaderResult } from "./loader.ts";
import { memory } from "./memory.ts";

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
  },
});
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

async function startServer(): Promise<{ proc: LineProcess; port: number }> {
  const proc = new LineProcess([
    "run",
    "--allow-net",
    "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
    `${root}main.ts`,
    "--port=0",
    "--hostname=127.0.0.1",
    "--rate-limit=0",
    "--max-connections=100000",
    "--max-connections-per-ip=0",
  ]);
  for (;;) {
    const m = (await proc.line()).match(/listening on http:\/\/[^:]+:(\d+)\//);
    if (m) return { proc, port: Number(m[1]) };
  }
}

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

/** Runs the loaders for one fan-out measurement. */
async function fanout(port: number, pid: number) {
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
        `--url=ws://127.0.0.1:${port}/ws`,
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
  for (const l of loaders) await l.send("go");
  let peak = 0;
  const sampler = setInterval(async () => {
    peak = Math.max(peak, (await memory(pid)).rss);
  }, 200);
  let sent = 0;
  for (const l of loaders) sent += Number((await l.line()).split(" ")[1]);
  for (const l of loaders) await l.send(`expect ${sent}`);
  const results: LoaderResult[] = [];
  for (const l of loaders) results.push(JSON.parse(await l.line()));
  clearInterval(sampler);
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

const { proc, port } = await startServer();
const pid = proc.child.pid;
try {
  const perConn = idleClients > 0 ? await idle(port, pid) : NaN;
  const r = await fanout(port, pid);
  const { peak } = await memory(pid);
  const mode = values.json ? "json" : "plain";
  console.log(
    "| mode | clients | senders | offered msg/s | delivered msgs/s | p50 ms | p99 ms | lost | server peak RSS MB | RSS/idle conn KB |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  console.log(
    `| ${mode} | ${clients} | ${senders} | ${senders * rate} | ${
      Math.round(r.delivered)
    } | ${r.p50} | ${r.p99} | ${r.lost} | ${(peak / 2 ** 20).toFixed(1)} | ${
      (perConn / 1024).toFixed(1)
    } |`,
  );
} finally {
  proc.child.kill("SIGTERM");
  await proc.finish();
}
