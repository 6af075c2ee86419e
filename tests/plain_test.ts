import assert from "node:assert/strict";
import { FRAME_CHARS, SENDS_PER_TURN } from "../hub.ts";
import { encodeChat, JSON_SUBPROTOCOL } from "../protocol.ts";
import {
  closeAll,
  connect,
  connectMany,
  startServer,
  within,
  withServer,
} from "./helpers.ts";

Deno.test("plain: every member gets every message, sender included", () =>
  withServer(async (srv) => {
    const clients = await Promise.all(
      [1, 2, 3].map(() => connect(`${srv.ws}/ws`)),
    );
    clients[0].send("hello");
    clients[1].send("world");
    for (const c of clients) await c.waitLines(2);
    const first = clients[0].lines;
    for (const c of clients) assert.deepEqual(c.lines, first);
    assert.deepEqual([...first].sort(), ["hello", "world"]);
    await closeAll(clients);
  }));

Deno.test("plain: newlines become spaces, controls go, text is trimmed, empty is dropped", () =>
  withServer(async (srv) => {
    const a = await connect(`${srv.ws}/ws`);
    a.send("  one\ntwo\r\nthree  ");
    a.send("   ");
    a.send("\n\n");
    a.send("");
    a.send("\u001b[31mred\u0007\u0000 text");
    a.send("\u0007");
    a.send("last");
    await a.waitFor(() => a.lines.includes("last"), "last");
    assert.deepEqual(a.lines, ["one two three", "[31mred text", "last"]);
    await a.close();
  }));

Deno.test("plain: coalesced frames split back into the same messages in order", () =>
  withServer(async (srv) => {
    const sender = await connect(`${srv.ws}/ws`);
    const reader = await connect(`${srv.ws}/ws`);
    const sent = Array.from({ length: 500 }, (_, i) => `msg ${i}`);
    for (const m of sent) sender.send(m);
    await reader.waitLines(sent.length);
    await sender.waitLines(sent.length);
    assert.deepEqual(reader.lines, sent);
    assert.deepEqual(sender.lines, sent);
    // 500 messages sent in one go arrive in fewer frames than messages.
    assert.ok(
      reader.frames.length < sent.length,
      `${reader.frames.length} frames`,
    );
    await closeAll([sender, reader]);
  }));

Deno.test("plain and JSON: a backlog longer than a frame comes as several frames, complete and in order", () =>
  withServer(async (srv) => {
    const plain = await connect(`${srv.ws}/ws?name=p`);
    const json = await connect(`${srv.ws}/ws`, JSON_SUBPROTOCOL);
    await json.waitFor(() => json.frames.length > 0, "welcome");
    const before = json.frames.length;
    // Sent in one go, these arrive in one read burst: a backlog of 1.6 MB.
    // Two JSON lines fill a frame but for a few characters, so the JSON
    // member's own error line does not fit in front of them.
    const overhead = encodeChat("lobby", {
      seq: 100,
      from: "p",
      time: Date.now(),
      text: "",
    }).length;
    const length = Math.floor((FRAME_CHARS - 1) / 2) - overhead - 4;
    const sent = Array.from(
      { length: 100 },
      (_, i) => `${i}:`.padEnd(length, "x"),
    );
    for (const m of sent) plain.send(m);
    // An error for the JSON member alone, likely in the same visit as the
    // backlog: its own line goes first, and still within the frame limit.
    json.send("{");
    await plain.waitLines(sent.length);
    await json.waitFor(
      () => json.messages.filter((m) => m.type === "message").length === 100,
      "100 JSON messages",
    );
    assert.deepEqual(plain.lines, sent);
    const texts = json.messages.filter((m) => m.type === "message")
      .map((m) => m.text);
    assert.deepEqual(texts, sent);
    await json.waitFor(
      () => json.messages.some((m) => m.code === "bad_json"),
      "bad_json error",
    );
    for (const socket of [plain, json]) {
      const frames = socket.frames.slice(socket === json ? before : 0);
      assert.ok(frames.length < sent.length, `${frames.length} frames`);
      for (const frame of frames) {
        assert.ok(String(frame).length <= FRAME_CHARS);
      }
    }
    await closeAll([plain, json]);
  }, { rateLimit: 0 }));

Deno.test("plain: order is the hub's order for every member", () =>
  withServer(async (srv) => {
    const clients = await Promise.all(
      [1, 2, 3, 4].map(() => connect(`${srv.ws}/ws`)),
    );
    for (let i = 0; i < 50; i++) {
      for (const [n, c] of clients.entries()) c.send(`c${n}-${i}`);
    }
    for (const c of clients) await c.waitLines(200);
    for (const c of clients) assert.deepEqual(c.lines, clients[0].lines);
    for (let n = 0; n < 4; n++) {
      const own = clients[0].lines.filter((l) => l.startsWith(`c${n}-`));
      assert.deepEqual(own, Array.from({ length: 50 }, (_, i) => `c${n}-${i}`));
    }
    await closeAll(clients);
  }));

Deno.test("plain: a room too big for one turn's sends gets every message once, in order", () =>
  withServer(async (srv) => {
    // Each delivery pass spans at least three turns, and the senders keep
    // sending while passes are under way.
    const clients = await connectMany(`${srv.ws}/ws`, 2 * SENDS_PER_TURN + 1);
    const senders = clients.slice(0, 3);
    for (let i = 0; i < 20; i++) {
      for (const [n, c] of senders.entries()) c.send(`s${n}-${i}`);
      await new Promise((r) => setTimeout(r, 1));
    }
    for (const c of clients) await c.waitLines(60);
    const order = clients[0].lines;
    for (const c of clients) assert.deepEqual(c.lines, order);
    for (let n = 0; n < 3; n++) {
      const own = order.filter((l) => l.startsWith(`s${n}-`));
      assert.deepEqual(own, Array.from({ length: 20 }, (_, i) => `s${n}-${i}`));
    }
    await closeAll(clients);
  }));

Deno.test("plain: rooms are isolated", () =>
  withServer(async (srv) => {
    const red = await connect(`${srv.ws}/ws?room=red`);
    const blue = await connect(`${srv.ws}/ws?room=blue`);
    const lobby = await connect(`${srv.ws}/ws`);
    const lobby2 = await connect(`${srv.ws}/ws?room=lobby`);
    red.send("for red");
    blue.send("for blue");
    lobby.send("for lobby");
    await red.waitLines(1);
    await blue.waitLines(1);
    await lobby2.waitLines(1);
    // A marker through each room proves nothing else is still on its way.
    red.send("end");
    blue.send("end");
    lobby.send("end");
    for (const c of [red, blue, lobby2]) await c.waitLines(2);
    assert.deepEqual(red.lines, ["for red", "end"]);
    assert.deepEqual(blue.lines, ["for blue", "end"]);
    assert.deepEqual(lobby2.lines, ["for lobby", "end"]);
    await closeAll([red, blue, lobby, lobby2]);
  }));

Deno.test("plain: a message over --max-message-bytes closes 1009 and is not broadcast", () =>
  withServer(async (srv) => {
    const big = await connect(`${srv.ws}/ws`);
    const other = await connect(`${srv.ws}/ws`);
    big.send("x".repeat(100));
    await other.waitLines(1);
    // 34 three-byte characters: 34 code units but 102 bytes.
    big.send("€".repeat(34));
    const ev = await big.closed;
    assert.equal(ev.code, 1009);
    other.send("after");
    await other.waitLines(2);
    assert.deepEqual(other.lines, ["x".repeat(100), "after"]);
    await other.close();
  }, { maxMessageBytes: 100 }));

Deno.test("plain: a binary frame closes 1003", () =>
  withServer(async (srv) => {
    const a = await connect(`${srv.ws}/ws`);
    a.send(new Uint8Array([1, 2, 3]));
    const ev = await within(a.closed, "close after binary");
    assert.equal(ev.code, 1003);
  }));

Deno.test("plain: a client written for the Go chat example works unchanged", async () => {
  // The Go example's page: send raw text frames, split received frames on
  // "\n", show each line. Nothing else is negotiated.
  const srv = await startServer();
  try {
    const shown: string[] = [];
    const ws = new WebSocket(`${srv.ws}/ws`);
    const open = Promise.withResolvers<void>();
    const got = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<void>();
    ws.onopen = () => open.resolve();
    ws.onclose = () => closed.resolve();
    ws.onmessage = (ev) => {
      for (const line of String(ev.data).split("\n")) shown.push(line);
      if (shown.length === 3) got.resolve();
    };
    await within(open.promise, "open");
    assert.equal(ws.protocol, "");
    ws.send("hi");
    ws.send("multi\nline");
    ws.send("bye");
    await within(got.promise, "3 lines");
    assert.deepEqual(shown, ["hi", "multi line", "bye"]);
    ws.close();
    await closed.promise;
  } finally {
    await srv.close();
  }
});
