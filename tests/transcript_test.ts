import assert from "node:assert/strict";
import {
  attemptUrl,
  backoffDelay,
  offeredProtocols,
  parseConnectArgs,
  UsageError,
} from "../connect_options.ts";
import { type Line, printable, Transcript } from "../transcript.ts";

const welcome = (o: Record<string, unknown>) =>
  JSON.stringify({
    type: "welcome",
    you: "me",
    room: "r",
    members: ["me"],
    memberCount: 1,
    history: [],
    gap: false,
    seq: 0,
    epoch: "e1",
    ...o,
  });
const msg = (seq: number, text: string, from = "ann") =>
  JSON.stringify({ type: "message", room: "r", seq, from, time: 0, text });
const out = (lines: Line[]) =>
  lines.filter((l) => l.to === "out").map((l) => l.text);
const err = (lines: Line[]) =>
  lines.filter((l) => l.to === "err").map((l) => l.text);

Deno.test("connect options: --room and --nick set the query, http: becomes ws:", () => {
  const cmd = parseConnectArgs([
    "--",
    "http://h:1/ws?x=1",
    "--room",
    "r",
    "--nick",
    "n",
  ]);
  assert.equal(cmd.kind, "run");
  if (cmd.kind !== "run") return;
  assert.equal(cmd.options.url.href, "ws://h:1/ws?x=1&room=r&name=n");
  assert.deepEqual(cmd.options.protocols, ["hubbub.v1"]);
  assert.throws(() => parseConnectArgs(["file:///x"]), UsageError);
});

Deno.test("connect options: /echo is offered no hubbub.v1; a token rides as bearer.", () => {
  assert.deepEqual(offeredProtocols(new URL("ws://h/echo")), []);
  assert.deepEqual(offeredProtocols(new URL("ws://h/chat/echo"), "a.b.c"), [
    "bearer.a.b.c",
  ]);
  assert.deepEqual(offeredProtocols(new URL("ws://h/ws"), "a.b.c"), [
    "hubbub.v1",
    "bearer.a.b.c",
  ]);
});

Deno.test("connect options: resume parameters and jittered backoff", () => {
  const base = new URL("ws://h/ws?room=r");
  assert.equal(attemptUrl(base, null).href, base.href);
  assert.equal(
    attemptUrl(base, { since: 7, epoch: "e" }).href,
    "ws://h/ws?room=r&since=7&epoch=e",
  );
  assert.equal(backoffDelay(0, () => 0), 125);
  assert.equal(backoffDelay(0, () => 1), 250);
  assert.equal(backoffDelay(3, () => 1), 2000);
  assert.equal(backoffDelay(30, () => 1), 10_000);
});

Deno.test("transcript: chat lines on stdout, joins and errors on stderr", () => {
  const t = new Transcript(false);
  t.open(true);
  const first = t.receive(
    welcome({ history: [JSON.parse(msg(1, "old"))], seq: 1 }),
  );
  assert.deepEqual(out(first).map((l) => l.slice(8)), ["ann: old"]);
  assert.deepEqual(err(first), ["* joined r as me (1 member)"]);
  const lines = t.receive(
    [
      JSON.stringify({ type: "join", name: "me", time: 0 }),
      JSON.stringify({ type: "join", name: "bob", time: 0 }),
      msg(2, "two\nlines"),
      JSON.stringify({ type: "error", code: "bad_name", message: "no" }),
      "not json",
    ].join("\n"),
  );
  assert.deepEqual(out(lines).map((l) => l.slice(8)), ["ann: two\n  lines"]);
  assert.deepEqual(err(lines), [
    "* bob joined",
    "! bad_name: no",
    "! unreadable line: not json",
  ]);
  assert.deepEqual(t.resume, { since: 2, epoch: "e1" });
});

Deno.test("transcript: a resumed welcome repeats nothing; a new epoch is a reported gap", () => {
  const t = new Transcript(true);
  t.open(true);
  t.receive(welcome({ seq: 0 }));
  t.receive(msg(1, "a") + "\n" + msg(2, "b"));
  t.open(true);
  // Same epoch: seq 2 again (a server resending) is not printed twice.
  const again = t.receive(
    welcome({
      history: [JSON.parse(msg(2, "b")), JSON.parse(msg(3, "c"))],
      seq: 3,
    }),
  );
  const [shown] = out(again); // the welcome, without the repeat
  assert.deepEqual(
    JSON.parse(shown).history.map((m: { seq: number }) => m.seq),
    [3],
  );
  assert.deepEqual(err(again), []);
  assert.equal(out(t.receive(msg(3, "c"))).length, 0);
  t.open(true);
  const restarted = t.receive(
    welcome({
      history: [JSON.parse(msg(1, "new"))],
      seq: 1,
      epoch: "e2",
      gap: true,
    }),
  );
  assert.match(err(restarted)[0], /^! gap: the room's history started again/);
  assert.deepEqual(t.resume, { since: 1, epoch: "e2" });
});

Deno.test("transcript: own messages are awaited until they come back", () => {
  const t = new Transcript(false);
  t.open(true);
  t.receive(welcome({}));
  t.expect("hi");
  assert.equal(t.pending, 1);
  t.receive(msg(1, "hi", "ann"));
  assert.equal(t.pending, 1);
  t.receive(msg(2, "hi", "me"));
  assert.equal(t.pending, 0);
  const plain = new Transcript(false);
  plain.open(false);
  plain.expect(" x ");
  plain.receive("y\nx");
  assert.equal(plain.pending, 0);
});

Deno.test("transcript: terminal control characters are not printed", () => {
  assert.equal(printable("a\x1b[2Jb\tc\x07"), "a[2Jb\tc");
});
