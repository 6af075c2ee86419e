/**
 * Time to restart on a big `--data` file: writes `--rooms` rooms of
 * `--messages` messages each (default 100 × 10,000) into a fresh database,
 * then starts the server on it and prints how long until it listens, until
 * the first room's welcome, and until every room has welcomed one client;
 * twice, alternating with a start without `--data` for comparison. A
 * benchmark, not a test.
 *
 *   deno run --allow-all bench/restart.ts [--rooms 100] [--messages 10000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openHistoryDb } from "../history_db.ts";

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    rooms: { type: "string", default: "100" },
    messages: { type: "string", default: "10000" },
  },
});
const rooms = Number(values.rooms);
const messages = Number(values.messages);
const main = new URL("../main.ts", import.meta.url).pathname;

/** Fills a hubbub database the way the server would have. */
function generate(path: string): void {
  const db = openHistoryDb(path, "normal");
  const room = db.prepare(
    "INSERT INTO rooms (name, epoch, first_seq, last_seq) VALUES (?, ?, 1, ?) RETURNING id",
  );
  const msg = db.prepare(
    "INSERT INTO messages (room, seq, sender, time, text) VALUES (?, ?, ?, ?, ?)",
  );
  const text = "x".repeat(64);
  const now = Date.now();
  for (let r = 0; r < rooms; r++) {
    db.exec("BEGIN");
    const id = Number(room.get(`room-${r}`, `e${r}`, messages)!.id);
    for (let s = 1; s <= messages; s++) msg.run(id, s, "gen", now, text);
    db.exec("COMMIT");
  }
  db.close();
}

/** Starts main.ts with `args`; resolves with the port and the child. */
async function start(
  args: string[],
): Promise<{ child: Deno.ChildProcess; port: number; ms: number }> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      main,
      "--port=0",
      "--hostname=127.0.0.1",
      ...args,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited before listening");
    out += value;
    const m = out.match(/listening on http:\/\/[^:]+:(\d+)\//);
    if (m) {
      await reader.cancel();
      return { child, port: Number(m[1]), ms: performance.now() - t0 };
    }
  }
}

/** Milliseconds until a JSON client of `room` has its welcome. */
function welcome(port: number, room: string): Promise<number> {
  const t0 = performance.now();
  const ws = new WebSocket(
    `ws://127.0.0.1:${port}/ws?room=${room}`,
    "hubbub.v1",
  );
  return new Promise((resolve, reject) => {
    ws.onmessage = () => {
      resolve(performance.now() - t0);
      ws.close();
    };
    ws.onerror = () => reject(new Error("socket error"));
  });
}

const dir = await Deno.makeTempDir({ prefix: "hubbub-restart-" });
try {
  const path = `${dir}/hubbub.db`;
  const g0 = performance.now();
  generate(path);
  const genMs = performance.now() - g0;
  const size = Deno.statSync(path).size;
  console.log(
    `generated ${rooms} rooms × ${messages} messages: ${
      (size / 2 ** 20).toFixed(0)
    } MB in ${(genMs / 1000).toFixed(1)} s`,
  );
  console.log(
    "| start | to listening ms | first welcome ms | all rooms welcomed ms |",
  );
  console.log("|---|---:|---:|---:|");
  for (const data of [false, true, false, true]) {
    const { child, port, ms } = await start(data ? [`--data=${path}`] : []);
    const first = await welcome(port, "room-0");
    const t0 = performance.now();
    for (let r = 1; r < rooms; r++) await welcome(port, `room-${r}`);
    const all = first + performance.now() - t0;
    console.log(
      `| ${data ? "--data" : "memory"} | ${ms.toFixed(0)} | ${
        first.toFixed(1)
      } | ${all.toFixed(0)} |`,
    );
    child.kill("SIGTERM");
    await child.status;
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
