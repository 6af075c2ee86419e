import assert from "node:assert/strict";
import { connect, within, withServer } from "./helpers.ts";

Deno.test("echo: text comes back as text, binary as binary", () =>
  withServer(async (srv) => {
    const e = await connect(`${srv.ws}/echo`);
    e.send("hello\nthere");
    e.send(new Uint8Array([0, 1, 2, 255]));
    e.send("");
    await e.waitFor(() => e.frames.length === 3, "3 echoes");
    assert.equal(e.frames[0], "hello\nthere");
    assert.ok(e.frames[1] instanceof ArrayBuffer);
    assert.deepEqual([...new Uint8Array(e.frames[1])], [0, 1, 2, 255]);
    assert.equal(e.frames[2], "");
    await e.close();
  }));

Deno.test("echo: a frame over --max-echo-bytes closes 1009", () =>
  withServer(async (srv) => {
    const e = await connect(`${srv.ws}/echo`);
    e.send(new Uint8Array(1024));
    await e.waitFor(() => e.frames.length === 1, "echo at the limit");
    e.send(new Uint8Array(1025));
    assert.equal((await within(e.closed, "close")).code, 1009);
    const t = await connect(`${srv.ws}/echo`);
    t.send("y".repeat(1025));
    assert.equal((await within(t.closed, "close")).code, 1009);
  }, { maxEchoBytes: 1024 }));

Deno.test("echo: default limit is 1 MiB", () =>
  withServer(async (srv) => {
    const e = await connect(`${srv.ws}/echo`);
    e.send(new Uint8Array(1 << 20));
    await e.waitFor(() => e.frames.length === 1, "1 MiB echo");
    assert.equal((e.frames[0] as ArrayBuffer).byteLength, 1 << 20);
    e.send(new Uint8Array((1 << 20) + 1));
    assert.equal((await within(e.closed, "close")).code, 1009);
  }));
