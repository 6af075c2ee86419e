import assert from "node:assert/strict";
import {
  freePort,
  joinJson,
  numbered,
  post,
  spawnServer,
  within,
} from "./helpers.ts";

Deno.test("kill -9 and restart without --data: a reconnect is told its since is void", async () => {
  const port = freePort();
  const first = await spawnServer(["--port", String(port)]);
  let epoch: unknown;
  try {
    const a = await joinJson(first, "?room=r");
    epoch = a.messages[0].epoch;
    await post(a, numbered("old ", 1, 3));
    const status = await first.stop("SIGKILL");
    assert.equal(status.signal, "SIGKILL");
    // No close frame from a killed server: an unclean close (browsers say
    // 1006; Deno's client reports code 0).
    const ev = await within(a.closed, "close after kill");
    assert.equal(ev.wasClean, false);
    assert.ok(ev.code === 1006 || ev.code === 0, String(ev.code));
  } finally {
    await first.stop();
  }

  const second = await spawnServer(["--port", String(port)]);
  try {
    const writer = await joinJson(second, "?room=r");
    await post(writer, ["new 1"]);
    // The old client comes back with its last seq (3) and the old epoch.
    const back = await joinJson(second, `?room=r&since=3&epoch=${epoch}`);
    const w = back.messages[0];
    assert.notEqual(w.epoch, epoch);
    assert.equal(w.gap, true);
    assert.deepEqual(
      (w.history as { text: string }[]).map((m) => m.text),
      ["new 1"],
    );
    await back.close();
    await writer.close();
  } finally {
    assert.equal((await second.stop()).code, 0);
  }
});
