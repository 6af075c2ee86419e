import assert from "node:assert/strict";
import { redisMissing } from "./redis_helpers.ts";

const BENCH = new URL("../bench/main.ts", import.meta.url).pathname;

const MODES: [string, string[]][] = [
  ["plain", []],
  ["json", ["--json"]],
  ["plain+data(normal)", ["--data"]],
  ["plain redis×2", ["--redis=2"]],
];

for (const [mode, flags] of MODES) {
  // Like the other Redis tests: skipped, not failed, without redis-server.
  const ignore = flags.some((f) => f.startsWith("--redis")) &&
    redisMissing() !== null;
  Deno.test(
    `bench: a one-second ${mode} run with a few clients prints its table`,
    { ignore },
    async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          BENCH,
          "--clients=10",
          "--senders=2",
          "--rate=20",
          "--duration=1",
          "--warmup=0",
          "--idle=20",
          "--loaders=1",
          ...flags,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const lines = stdout.trim().split("\n");
      assert.match(lines[0], /\| clients \| senders \|.*\| p99 ms \| lost \|/);
      const row = lines[2].split("|").map((c) => c.trim());
      assert.equal(row[1], mode);
      assert.equal(row[2], "10");
      assert.equal(row[8], "0", "no message lost");
    },
  );
}
