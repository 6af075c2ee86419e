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
import { startServer } from "./server.ts";

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    rooms: { type: "string", default: "100" },
    messages: { type: "string", default: "10000" },
  },
});
const rooms = Number(values.rooms);
const messages = Number(values.messages);

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
    const t0 = performance.now();
    const server = await startServer(
      data ? { args: [`--data=${path}`], dataDir: dir } : {},
    );
    const ms = performance.now() - t0;
    const { port } = server;
    const first = await welcome(port, "room-0");
    const t1 = performance.now();
    for (let r = 1; r < rooms; r++) await welcome(port, `room-${r}`);
    const all = first + performance.now() - t1;
    console.log(
      `| ${data ? "--data" : "memory"} | ${ms.toFixed(0)} | ${
        first.toFixed(1)
      } | ${all.toFixed(0)} |`,
    );
    await server.stop();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
