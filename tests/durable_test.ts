import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { APPLICATION_ID } from "../history_db.ts";
import { FRAME_CHARS, PLAIN_NOT_STORED } from "../hub.ts";
import {
  connect,
  joinJson,
  numbered,
  ofType,
  post,
  range,
  spawnServer,
  type TestServer,
  type TestSocket,
  until,
  WAIT_MS,
  within,
  withServer,
} from "./helpers.ts";

type Msg = Record<string, unknown>;
type Rec = { seq: number; text: string; from: string; time: number };

/** Permissions of a server with --data: the start task's. */
const DATA_FLAGS = [
  "--allow-net",
  "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
  "--allow-read",
  "--allow-write",
];
const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-data-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asks for a scrollback page and waits for the reply. */
async function page(s: TestSocket, req: Msg): Promise<Msg> {
  const before = ofType(s, "history").length;
  s.send(JSON.stringify({ type: "history", ...req }));
  await s.waitFor(
    () => ofType(s, "history").length > before,
    "history reply",
  );
  return ofType(s, "history")[before];
}

const seqs = (recs: unknown): number[] => (recs as Rec[]).map((r) => r.seq);

Deno.test("data: kill -9 and restart keep every message, seq and epoch", () =>
  withTempDir(async (dir) => {
    const data = `${dir}/hubbub.db`;
    const args = ["--port", "0", "--data", data, "--rate-limit", "0"];
    let epoch: unknown;
    let before: Rec[];
    const first = await spawnServer(args, DATA_FLAGS);
    try {
      const a = await joinJson(first, "?room=r");
      epoch = a.messages[0].epoch;
      await post(a, numbered("m ", 1, 20));
      before = ofType(a, "message") as unknown as Rec[];
      assert.deepEqual(seqs(before), range(1, 20));
      assert.equal((await first.stop("SIGKILL")).signal, "SIGKILL");
      await within(a.closed, "close after kill");
    } finally {
      await first.stop();
    }

    const second = await spawnServer(args, DATA_FLAGS);
    try {
      const fresh = await joinJson(second, "?room=r");
      const w = fresh.messages[0];
      assert.equal(w.epoch, epoch);
      assert.equal(w.seq, 20);
      assert.equal(w.gap, false);
      assert.deepEqual(
        (w.history as Rec[]).map(({ seq, text }) => ({ seq, text })),
        before.map(({ seq, text }) => ({ seq, text })),
      );
      // A client that had seen up to 12 before the kill gets 13..20.
      const back = await joinJson(second, `?room=r&since=12&epoch=${epoch}`);
      const bw = back.messages[0];
      assert.equal(bw.gap, false);
      assert.equal(bw.epoch, epoch);
      assert.deepEqual(seqs(bw.history), range(13, 20));
      fresh.send(JSON.stringify({ type: "message", text: "after" }));
      await back.waitFor(() => ofType(back, "message").length === 1, "after");
      assert.equal(ofType(back, "message")[0].seq, 21);
      await back.close();
      await fresh.close();
    } finally {
      assert.equal((await second.stop()).code, 0);
    }

    // A graceful stop flushed and closed: a third life still has it all.
    const third = await spawnServer(args, DATA_FLAGS);
    try {
      const c = await joinJson(third, "?room=r");
      assert.deepEqual(seqs(c.messages[0].history), range(1, 21));
      await c.close();
    } finally {
      await third.stop();
    }
  }));

Deno.test("data: retention keeps --history-max on disk; scrollback pages to the first kept", () =>
  withTempDir((dir) =>
    withServer(async (srv) => {
      const a = await joinJson(srv, "?room=r");
      await post(a, numbered("m ", 1, 100));
      await until(
        async () =>
          (await metric(srv, "hubbub_history_stored_messages")) === 30,
        "trimmed to 30 on disk",
      );
      // Newest page first, then older pages down to seq 71 and more: false.
      const got: number[] = [];
      let reply = await page(a, { limit: 12 });
      for (;;) {
        got.unshift(...seqs(reply.messages));
        if (!reply.more) break;
        reply = await page(a, { before: got[0], limit: 12 });
      }
      assert.deepEqual(got, range(71, 100));
      assert.equal(reply.room, "r");
      assert.equal(reply.epoch, a.messages[0].epoch);
      // A since older than what is kept: gap, and all 30 kept, 10 in the
      // welcome and 20 after it.
      const old = await joinJson(
        srv,
        `?room=r&since=5&epoch=${a.messages[0].epoch}`,
      );
      await old.waitFor(() => ofType(old, "message").length === 20, "rest");
      assert.equal(old.messages[0].gap, true);
      assert.deepEqual(
        [...seqs(old.messages[0].history), ...seqs(ofType(old, "message"))],
        range(71, 100),
      );
      await old.close();
      await a.close();
    }, { data: `${dir}/h.db`, history: 10, historyMax: 30 })
  ));

Deno.test("scrollback without --data pages through memory; bad requests get errors", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?room=r");
    await post(a, numbered("m ", 1, 25));
    let reply = await page(a, { before: 26, limit: 10 });
    assert.deepEqual(seqs(reply.messages), range(16, 25));
    assert.equal(reply.more, true);
    reply = await page(a, { before: 16 });
    assert.deepEqual(seqs(reply.messages), range(6, 15));
    assert.equal(reply.more, false, "seq 6 is the first kept");
    reply = await page(a, { before: 6 });
    assert.deepEqual(reply.messages, []);
    assert.equal(reply.more, false);
    // A limit above the cap is cut to 200; bad fields are errors.
    reply = await page(a, { limit: 5000 });
    assert.deepEqual(seqs(reply.messages), range(6, 25));
    for (const bad of [{ limit: 0 }, { before: "x" }, { before: 1.5 }]) {
      const n = ofType(a, "error").length;
      a.send(JSON.stringify({ type: "history", ...bad }));
      await a.waitFor(() => ofType(a, "error").length > n, "error");
      assert.equal(ofType(a, "error")[n].code, "bad_message");
    }
    await a.close();
  }, { history: 20 }));

Deno.test("data: a since 5,000 back arrives whole, in frames of at most 32K plus one object", () =>
  withTempDir((dir) =>
    withServer(async (srv) => {
      const a = await joinJson(srv, "?room=r");
      await post(a, numbered(`${"x".repeat(60)} `, 1, 6000));
      const epoch = a.messages[0].epoch;
      const b = await joinJson(srv, `?room=r&since=1000&epoch=${epoch}`);
      await b.waitFor(
        () => ofType(b, "message").length === 4900,
        "4900 messages after the welcome",
      );
      const w = b.messages[0];
      assert.equal(w.gap, false);
      assert.equal((w.history as Rec[]).length, 100);
      assert.deepEqual(
        [...seqs(w.history), ...seqs(ofType(b, "message"))],
        range(1001, 6000),
      );
      const longest = Math.max(...b.lines.map((l) => l.length));
      for (const frame of b.frames) {
        assert.ok(String(frame).length <= FRAME_CHARS + longest);
      }
      assert.ok(b.frames.length >= 20, `${b.frames.length} frames`);
      await b.close();
      await a.close();
    }, { data: `${dir}/h.db` })
  ));

/** Runs main.ts to its exit (killed after a bounded wait): code and stderr. */
async function runMain(
  args: string[],
  flags = DATA_FLAGS,
): Promise<{ code: number; stderr: string }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), WAIT_MS);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...flags,
        MAIN,
        "--port",
        "0",
        "--hostname",
        "127.0.0.1",
        ...args,
      ],
      stdout: "null",
      stderr: "piped",
      signal: abort.signal,
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("data: a file that cannot be used is one line and exit 1", () =>
  withTempDir(async (dir) => {
    const text = `${dir}/notes.txt`;
    await Deno.writeTextFile(text, "not a database\n".repeat(200));
    const other = `${dir}/other.db`;
    const db = new DatabaseSync(other);
    db.exec("CREATE TABLE t (x)");
    db.close();
    const newer = `${dir}/newer.db`;
    const n = new DatabaseSync(newer);
    n.exec(
      `PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = 99`,
    );
    n.close();
    // A real hubbub file with a message, then its second page (the rooms
    // table) garbled.
    const corrupt = `${dir}/corrupt.db`;
    const srv = await spawnServer(
      ["--port", "0", "--data", corrupt],
      DATA_FLAGS,
    );
    const s = await joinJson(srv);
    await post(s, ["m 1"]);
    await s.close();
    assert.equal((await srv.stop()).code, 0);
    const bytes = await Deno.readFile(corrupt);
    assert.ok(bytes.length >= 8192, `${bytes.length} bytes`);
    bytes.fill(0xa5, 4096, 8192);
    await Deno.writeFile(corrupt, bytes);
    await Deno.mkdir(`${dir}/adir`);
    // A file another running hubbub holds.
    const inUse = `${dir}/in-use.db`;
    const holder = await spawnServer(
      ["--port", "0", "--data", inUse],
      DATA_FLAGS,
    );

    const cases: [string, string[], RegExp, string[]?][] = [
      ["text file", ["--data", text], /is not a hubbub database/],
      ["other SQLite file", ["--data", other], /is not a hubbub database/],
      ["newer schema", ["--data", newer], /newer hubbub \(schema 99/],
      ["corrupt", ["--data", corrupt], /is corrupt/],
      ["directory", ["--data", `${dir}/adir`], /is a directory/],
      ["missing parent", ["--data", `${dir}/none/h.db`], /cannot open/],
      ["no permission", ["--data", `${dir}/p.db`], /no permission/, [
        "--allow-net",
        "--allow-env",
      ]],
      ["in use", ["--data", inUse], /in use by another process/],
    ];
    for (const [name, args, message, flags] of cases) {
      const { code, stderr } = await runMain(args, flags);
      assert.equal(code, 1, `${name}: ${stderr}`);
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${name}: ${stderr}`);
      assert.match(lines[0], message, name);
      assert.match(lines[0], /^hubbub: /, name);
    }
    assert.equal((await holder.stop()).code, 0);
  }));

Deno.test("data: a write failure tells the sender and delivers nothing unstored", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-full-" });
  try {
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!mount.success) {
      console.log(
        `skipped: cannot mount a small tmpfs here (${
          new TextDecoder().decode(mount.stderr).trim()
        })`,
      );
      return;
    }
    try {
      await t.step("full disk", () => fullDisk(dir));
    } finally {
      await new Deno.Command("umount", { args: [dir] }).output();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function fullDisk(dir: string): Promise<void> {
  await withServer(async (srv) => {
    const a = await joinJson(srv, "?room=r&name=a");
    const b = await joinJson(srv, "?room=r&name=b");
    const plain = await connect(`${srv.ws}/ws?room=r&name=p`);
    a.send(JSON.stringify({ type: "message", text: "stored 1" }));
    await b.waitFor(() => ofType(b, "message").length === 1, "stored 1");

    // Fill the file system: the next commit cannot grow the log.
    const filler = await Deno.open(`${dir}/filler`, {
      write: true,
      create: true,
    });
    try {
      const block = new Uint8Array(4096);
      for (;;) filler.writeSync(block);
    } catch (err) {
      if (!(err instanceof Error && /No space/.test(err.message))) throw err;
    }
    a.send(JSON.stringify({ type: "message", text: "lost" }));
    await a.waitFor(() => ofType(a, "error").length === 1, "not_stored");
    assert.equal(ofType(a, "error")[0].code, "not_stored");
    plain.send("lost too");
    await plain.waitFor(() => plain.lines.includes(PLAIN_NOT_STORED), "notice");
    assert.ok(await metric(srv, "hubbub_history_write_failures_total") >= 2);
    assert.equal(await metric(srv, "hubbub_messages_not_stored_total"), 2);

    // Space returns: the next message is stored and numbered right after
    // the last stored one; b never saw the lost ones.
    filler.close();
    await Deno.remove(`${dir}/filler`);
    a.send(JSON.stringify({ type: "message", text: "stored 2" }));
    await b.waitFor(() => ofType(b, "message").length === 2, "stored 2");
    assert.deepEqual(
      ofType(b, "message").map((m) => [m.seq, m.text]),
      [[1, "stored 1"], [2, "stored 2"]],
    );
    assert.deepEqual(plain.lines, ["stored 1", PLAIN_NOT_STORED, "stored 2"]);
    const c = await joinJson(srv, "?room=r");
    assert.deepEqual(
      (c.messages[0].history as Rec[]).map((m) => m.text),
      ["stored 1", "stored 2"],
    );
    await Promise.all([a.close(), b.close(), c.close(), plain.close()]);
  }, { data: `${dir}/h.db` });
}

/** A metric's value from the server's `/metrics`. */
async function metric(srv: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  if (line === undefined) return NaN;
  return Number(line.split(" ")[1]);
}
