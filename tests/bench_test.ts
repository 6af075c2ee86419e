import assert from "node:assert/strict";

const BENCH = new URL("../bench/main.ts", import.meta.url).pathname;

for (const mode of ["plain", "json"] as const) {
  Deno.test(`bench: a one-second ${mode} run with a few clients prints its table`, async () => {
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
        ...(mode === "json" ? ["--json"] : []),
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
  });
}
