import assert from "node:assert/strict";
import { spawnServer } from "./helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function runMain(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
      MAIN,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("main: bad flags print one line and exit 2", async () => {
  for (const args of [["--nope"], ["--port", "x"], ["--log-format", "yaml"]]) {
    const r = await runMain(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^hubbub: /);
  }
});

Deno.test("main: a port already taken prints one line and exits 2", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const r = await runMain(["--hostname", "127.0.0.1", "--port", String(port)]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(`^hubbub: cannot listen on 127\\.0\\.0\\.1:${port}: `),
  );
});

Deno.test("main: --help lists the flags and exits 0", async () => {
  const r = await runMain(["--", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--port/);
  assert.match(r.stdout, /HUBBUB_MAX_BUFFERED_BYTES/);
});

Deno.test("main: --log-format json writes one JSON object per log line", async () => {
  const srv = await spawnServer(["--log-format", "json"]);
  const status = await srv.stop();
  assert.equal(status.code, 0);
  const lines = srv.stderr().trim().split("\n");
  const events = lines.map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => e.msg), [
    "started",
    "stopping",
    "stopped",
  ]);
  for (const e of events) {
    assert.equal(typeof e.time, "string");
    assert.equal(e.level, "info");
  }
  assert.equal(events[0].port, srv.port);
});
