import assert from "node:assert/strict";
import { LARGE_ROOM, SENDS_PER_TURN } from "../hub.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  closeAll,
  connect,
  connectMany,
  joinJson,
  ofType,
  rawHandshake,
  startServer,
  type TestSocket,
  UPGRADE_HEADERS,
  within,
  withServer,
} from "./helpers.ts";

type Msg = Record<string, unknown>;

function waitType(s: TestSocket, type: string, n = 1): Promise<void> {
  return s.waitFor(() => ofType(s, type).length >= n, `${n} ${type}`);
}

Deno.test("json: subprotocol is echoed and the first message is a welcome", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?room=r1&name=alice");
    assert.equal(a.socket.protocol, JSON_SUBPROTOCOL);
    const { epoch, ...w } = a.messages[0];
    assert.match(String(epoch), /^[A-Za-z0-9-]{1,36}$/);
    assert.deepEqual(w, {
      type: "welcome",
      you: "alice",
      room: "r1",
      members: ["alice"],
      memberCount: 1,
      history: [],
      gap: false,
      seq: 0,
    });
    await a.close();
  }));

Deno.test("json: chat messages carry seq, sender, server time and text", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?name=alice");
    const b = await joinJson(srv, "?name=bob");
    const before = Date.now();
    a.send(JSON.stringify({ type: "message", text: "hi bob" }));
    b.send(JSON.stringify({ type: "message", text: "hi alice", extra: 1 }));
    await waitType(a, "message", 2);
    await waitType(b, "message", 2);
    const got = ofType(b, "message");
    assert.deepEqual(ofType(a, "message"), got);
    assert.deepEqual(got.map((m) => m.seq), [1, 2]);
    assert.deepEqual(got.map((m) => [m.from, m.text]).sort(), [
      ["alice", "hi bob"],
      ["bob", "hi alice"],
    ]);
    for (const m of got) {
      assert.equal(m.room, "lobby");
      assert.ok(typeof m.time === "number" && m.time >= before - 1000);
    }
    await closeAll([a, b]);
  }));

Deno.test("json: join, leave (clean and abrupt) and presence", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?name=alice");
    const b = await joinJson(srv, "?name=bob");
    assert.deepEqual(b.messages[0].members, ["alice", "bob"]);
    await waitType(a, "join", 2);
    assert.deepEqual(ofType(a, "join").map((m) => m.name), ["alice", "bob"]);
    a.send(JSON.stringify({ type: "who" }));
    await waitType(a, "presence");
    assert.deepEqual(ofType(a, "presence")[0], {
      type: "presence",
      room: "lobby",
      members: ["alice", "bob"],
    });
    await b.close();
    await waitType(a, "leave");
    assert.equal(ofType(a, "leave")[0].name, "bob");

    // Abrupt: a raw TCP peer that vanishes without a close frame.
    const c = await joinJson(srv, "?name=carol");
    await waitType(a, "join", 3);
    const ghost = await rawHandshake(
      srv.port,
      "/ws?name=dave",
      JSON_SUBPROTOCOL,
    );
    await waitType(a, "join", 4);
    ghost.close(); // TCP FIN, no close frame
    await waitType(a, "leave", 2);
    assert.equal(ofType(a, "leave")[1].name, "dave");
    await c.close();
    await waitType(a, "leave", 3);
    a.send(JSON.stringify({ type: "who" }));
    await waitType(a, "presence", 2);
    assert.deepEqual(ofType(a, "presence")[1].members, ["alice"]);
    await a.close();
  }));

Deno.test("json: nickname change, clash and invalid names", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?name=alice");
    const b = await joinJson(srv, "?name=bob");
    a.send(JSON.stringify({ type: "nick", name: "  alicia " }));
    await waitType(b, "nick");
    assert.deepEqual(
      { ...ofType(b, "nick")[0], time: 0 },
      { type: "nick", from: "alice", name: "alicia", time: 0 },
    );
    b.send(JSON.stringify({ type: "nick", name: "alicia" }));
    await waitType(b, "error");
    assert.equal(ofType(b, "error")[0].code, "name_taken");
    for (const name of ["", "x".repeat(33), "bad\u0007name", 42]) {
      b.send(JSON.stringify({ type: "nick", name }));
    }
    await waitType(b, "error", 5);
    assert.deepEqual(
      ofType(b, "error").slice(1).map((m) => m.code),
      ["bad_name", "bad_name", "bad_name", "bad_name"],
    );
    // Still connected and still bob.
    b.send(JSON.stringify({ type: "message", text: "still bob" }));
    await waitType(a, "message");
    assert.equal(ofType(a, "message")[0].from, "bob");
    // A name taken at join gets a suffix.
    const c = await joinJson(srv, "?name=bob");
    assert.equal(c.messages[0].you, "bob-2");
    await closeAll([a, b, c]);
  }));

Deno.test("json: malformed and unknown input gets errors; the socket stays open", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv);
    const cases: [string, string][] = [
      ["{not json", "bad_json"],
      ["[1,2]", "bad_message"],
      ["null", "bad_message"],
      ['"text"', "bad_message"],
      ['{"type":"dance"}', "unknown_type"],
      ['{"text":"no type"}', "unknown_type"],
      ['{"type":"message"}', "bad_message"],
      ['{"type":"message","text":5}', "bad_message"],
      ['{"type":"message","text":"  \\n "}', "empty_message"],
      ['{"type":"message","text":"\\u0000\\u0001"}', "empty_message"],
    ];
    for (const [frame] of cases) a.send(frame);
    await waitType(a, "error", cases.length);
    assert.deepEqual(
      ofType(a, "error").map((m) => m.code),
      cases.map((c) => c[1]),
    );
    for (const e of ofType(a, "error")) {
      assert.equal(typeof e.message, "string");
    }
    a.send(
      JSON.stringify({ type: "message", text: "a\u0007b\u001b[31mc\nd\te" }),
    );
    await waitType(a, "message");
    assert.equal(ofType(a, "message")[0].text, "ab[31mc\nd\te");
    // Oversized: closes 1009, as in plain mode.
    a.send(JSON.stringify({ type: "message", text: "x".repeat(1000) }));
    assert.equal((await within(a.closed, "close")).code, 1009);
  }, { maxMessageBytes: 1000 }));

Deno.test("json: plain and JSON clients share a room, each in its own protocol", () =>
  withServer(async (srv) => {
    const j = await joinJson(srv, "?name=jay");
    const p = await connect(`${srv.ws}/ws`);
    await waitType(j, "join", 2);
    p.send("from plain\nclient");
    j.send(JSON.stringify({ type: "message", text: "from json\nclient" }));
    await p.waitLines(2);
    await waitType(j, "message", 2);
    assert.deepEqual(p.lines, ["from plain client", "from json client"]);
    const texts = ofType(j, "message").map((m) => [m.from, m.text]);
    assert.equal(texts[0][1], "from plain client");
    assert.match(String(texts[0][0]), /^guest-\d+$/);
    assert.deepEqual(texts[1], ["jay", "from json\nclient"]);
    await closeAll([j, p]);
  }));

Deno.test("json: coalesced frames carry several messages, one per line", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv);
    for (let i = 0; i < 300; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(a, "message", 300);
    const msgs = ofType(a, "message");
    assert.deepEqual(
      msgs.map((m) => m.text),
      Array.from({ length: 300 }, (_, i) => `m${i}`),
    );
    assert.deepEqual(
      msgs.map((m) => m.seq),
      Array.from({ length: 300 }, (_, i) => i + 1),
    );
    assert.ok(a.frames.length < 300, `${a.frames.length} frames`);
    await a.close();
  }));

Deno.test("json: a join while a long delivery pass runs misses nothing and repeats nothing", () =>
  withServer(async (srv) => {
    // Plain members make every pass span several turns.
    const crowd = await connectMany(
      `${srv.ws}/ws?room=busy`,
      2 * SENDS_PER_TURN + 1,
    );
    const sender = await joinJson(srv, "?room=busy&name=sender");
    const joiners: TestSocket[] = [];
    for (let i = 0; i < 60; i++) {
      sender.send(JSON.stringify({ type: "message", text: `m${i}` }));
      if (i % 10 === 5) {
        joiners.push(await connect(`${srv.ws}/ws?room=busy`, JSON_SUBPROTOCOL));
      }
    }
    for (const j of joiners) {
      await j.waitFor(
        () => ofType(j, "message").some((m) => m.text === "m59"),
        "the last message",
      );
      const [welcome] = j.messages;
      assert.equal(welcome.type, "welcome");
      const history = welcome.history as Msg[];
      assert.equal(welcome.seq, history.at(-1)?.seq ?? 0);
      const seqs = [...history, ...ofType(j, "message")].map((m) => m.seq);
      assert.deepEqual(seqs, Array.from({ length: 60 }, (_, i) => i + 1));
    }
    await closeAll([...crowd, sender, ...joiners]);
  }));

Deno.test("json: history on join is the last --history messages", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv);
    for (let i = 1; i <= 8; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(a, "message", 8);
    const b = await joinJson(srv);
    const w = b.messages[0];
    assert.equal(w.type, "welcome");
    assert.equal(w.seq, 8);
    assert.equal(w.gap, false);
    assert.deepEqual((w.history as Msg[]).map((m) => [m.seq, m.text]), [
      [4, "m4"],
      [5, "m5"],
      [6, "m6"],
      [7, "m7"],
      [8, "m8"],
    ]);
    await closeAll([a, b]);
  }, { history: 5 }));

Deno.test("json: ?since=SEQ returns exactly the missed messages; too old says gap", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?room=rec&name=writer");
    const b = await joinJson(srv, "?room=rec&name=reader");
    for (let i = 1; i <= 3; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(b, "message", 3);
    const lastSeen = Math.max(
      ...ofType(b, "message").map((m) => m.seq as number),
    );
    await b.close();
    for (let i = 4; i <= 7; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(a, "message", 7);
    const back = await joinJson(srv, `?room=rec&name=reader&since=${lastSeen}`);
    a.send(JSON.stringify({ type: "message", text: "m8" }));
    await waitType(back, "message");
    const w = back.messages[0];
    assert.equal(w.gap, false);
    const seen = [
      ...(w.history as Msg[]),
      ...ofType(back, "message"),
    ].map((m) => [m.seq, m.text]);
    assert.deepEqual(seen, [[4, "m4"], [5, "m5"], [6, "m6"], [7, "m7"], [
      8,
      "m8",
    ]]);

    // Up to date: nothing to replay.
    const fresh = await joinJson(srv, "?room=rec&since=8");
    assert.deepEqual(fresh.messages[0].history, []);
    assert.equal(fresh.messages[0].gap, false);

    // Too old: 20 more messages push seq 9.. out of a 10-message history.
    for (let i = 9; i <= 28; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(a, "message", 28);
    const old = await joinJson(srv, "?room=rec&since=8");
    assert.equal(old.messages[0].gap, true);
    assert.deepEqual(
      (old.messages[0].history as Msg[]).map((m) => m.seq),
      Array.from({ length: 10 }, (_, i) => 19 + i),
    );
    for (
      const q of ["since=-1", "since=", "since=0x10", "since=1e2", "epoch=%20"]
    ) {
      const bad = await fetch(`${srv.http}/ws?${q}`, {
        headers: UPGRADE_HEADERS,
      });
      assert.equal(bad.status, 400, q);
      await bad.body?.cancel();
    }
    await closeAll([a, back, fresh, old]);
  }, { history: 10 }));

Deno.test("json: a flood is told once, then closed 1008", () =>
  withServer(async (srv) => {
    const b = await joinJson(srv);
    const a = await joinJson(srv);
    // Burst 5: five pass, the sixth is refused with an error, and the
    // fifth refusal after it (the eleventh frame) closes. Sending exactly
    // eleven keeps data from arriving after the close frame, which Deno's
    // server answers by dropping the connection without a code.
    for (let i = 0; i < 11; i++) {
      a.send(JSON.stringify({ type: "message", text: `f${i}` }));
    }
    const ev = await within(a.closed, "flood close");
    assert.equal(ev.code, 1008);
    assert.equal(ofType(a, "error").length, 1);
    assert.equal(ofType(a, "error")[0].code, "rate_limited");
    // Five were accepted and reached the room; the flooder was gone before
    // they were delivered, so the observer is the one that shows them.
    b.send(JSON.stringify({ type: "message", text: "end" }));
    await b.waitFor(
      () => ofType(b, "message").some((m) => m.text === "end"),
      "end",
    );
    assert.deepEqual(
      ofType(b, "message").map((m) => m.text),
      ["f0", "f1", "f2", "f3", "f4", "end"],
    );
    await b.close();
    const metrics = await (await fetch(`${srv.http}/metrics`)).text();
    assert.match(metrics, /^hubbub_evictions_total\{reason="rate_limit"\} 1$/m);
  }, { rateLimit: 1, rateBurst: 5 }));

Deno.test("json: a room over LARGE_ROOM members stops announcing joins; who lists all", async () => {
  const srv = await startServer({ maxConnections: 2000 });
  const crowd: TestSocket[] = [];
  try {
    const observer = await joinJson(srv, "?name=observer");
    while (crowd.length < LARGE_ROOM) {
      crowd.push(await connect(`${srv.ws}/ws`));
    }
    // The observer heard its own join and the crowd's up to LARGE_ROOM members.
    await waitType(observer, "join", LARGE_ROOM);
    const late = await joinJson(srv, "?name=late");
    const w = late.messages[0];
    assert.deepEqual(w.members, ["late"]);
    assert.equal(w.memberCount, LARGE_ROOM + 2);
    observer.send(JSON.stringify({ type: "who" }));
    await waitType(observer, "presence");
    const names = ofType(observer, "presence")[0].members as string[];
    assert.equal(names.length, LARGE_ROOM + 2);
    assert.ok(names.includes("late"));
    assert.equal(ofType(observer, "join").length, LARGE_ROOM);
    await closeAll([observer, late]);
  } finally {
    await closeAll(crowd);
    await srv.close();
  }
});

Deno.test("json: a since from another life of the room replays everything, flagged", () =>
  withServer(async (srv) => {
    const a = await joinJson(srv, "?room=life");
    const epoch = a.messages[0].epoch;
    for (let i = 1; i <= 3; i++) {
      a.send(JSON.stringify({ type: "message", text: `m${i}` }));
    }
    await waitType(a, "message", 3);
    // Same epoch: exact recovery.
    const same = await joinJson(srv, `?room=life&since=2&epoch=${epoch}`);
    assert.equal(same.messages[0].gap, false);
    assert.deepEqual((same.messages[0].history as Msg[]).map((m) => m.seq), [
      3,
    ]);
    // Another epoch (as after a restart): everything kept, and gap says so.
    const other = await joinJson(srv, "?room=life&since=2&epoch=elsewhere");
    assert.equal(other.messages[0].gap, true);
    assert.equal(other.messages[0].epoch, epoch);
    assert.deepEqual((other.messages[0].history as Msg[]).map((m) => m.seq), [
      1,
      2,
      3,
    ]);
    await closeAll([a, same, other]);
  }, { history: 10 }));

Deno.test("json: every frame costs a rate-limit token, not only chat messages", () =>
  withServer(async (srv) => {
    const watcher = await joinJson(srv, "?name=watcher");
    const a = await joinJson(srv, "?name=a0");
    // Three renames pass, the fourth frame is refused with an error, and
    // the seventh (three more refusals past the burst) closes.
    for (let i = 1; i <= 7; i++) {
      a.send(JSON.stringify({ type: "nick", name: `a${i}` }));
    }
    assert.equal((await within(a.closed, "close")).code, 1008);
    assert.equal(ofType(a, "error")[0].code, "rate_limited");
    await waitType(watcher, "leave");
    assert.deepEqual(ofType(watcher, "nick").map((m) => m.name), [
      "a1",
      "a2",
      "a3",
    ]);
    await watcher.close();
  }, { rateLimit: 1, rateBurst: 3 }));
