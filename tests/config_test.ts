import assert from "node:assert/strict";
import { ConfigError, envName, helpText, parseConfig } from "../config.ts";

const noEnv = () => undefined;

function run(args: string[], env: Record<string, string> = {}) {
  const parsed = parseConfig(args, (n) => env[n]);
  if (parsed.kind !== "run") throw new Error("expected a config");
  return parsed.config;
}

Deno.test("config: defaults match the contract", () => {
  const c = run([]);
  assert.equal(c.port, 8080);
  assert.equal(c.hostname, "0.0.0.0");
  assert.equal(c.maxMessageBytes, 16384);
  assert.equal(c.maxBufferedBytes, 1048576);
  assert.equal(c.maxEchoBytes, 1048576);
  assert.equal(c.idleTimeout, 60);
  assert.equal(c.rateLimit, 20);
  assert.equal(c.rateBurst, 40);
  assert.equal(c.maxConnections, 10000);
  assert.equal(c.history, 100);
  assert.equal(c.data, "");
  assert.equal(c.historyMax, 10000);
  assert.equal(c.dataSync, "normal");
  assert.deepEqual(c.allowOrigin, []);
  assert.equal(c.logFormat, "text");
  assert.equal(c.shutdownTimeout, 5);
});

Deno.test("config: flags beat environment twins, which beat defaults", () => {
  assert.equal(run([], { HUBBUB_PORT: "9001" }).port, 9001);
  assert.equal(run(["--port", "9002"], { HUBBUB_PORT: "9001" }).port, 9002);
  assert.equal(run(["--port=0"]).port, 0);
  assert.equal(run([], { HUBBUB_RATE_LIMIT: "0" }).rateLimit, 0);
  assert.equal(run(["--rate-limit", "0", "--rate-burst", "0"]).rateBurst, 0);
  assert.equal(run(["--idle-timeout", "0.5"]).idleTimeout, 0.5);
  assert.equal(run([], { HUBBUB_DATA: "/d/h.db" }).data, "/d/h.db");
  assert.equal(run(["--data-sync", "full"]).dataSync, "full");
  assert.equal(envName("max-buffered-bytes"), "HUBBUB_MAX_BUFFERED_BYTES");
});

Deno.test("config: --redis takes redis:// and rediss:// URLs, off by default", () => {
  assert.equal(run([]).redis, "");
  assert.equal(run([]).redisPresenceTtl, 15);
  assert.equal(
    run([], { HUBBUB_REDIS: "redis://127.0.0.1:6379" }).redis,
    "redis://127.0.0.1:6379",
  );
  assert.equal(
    run(["--redis", "rediss://user:pw@cache.example:6380/1"]).redis,
    "rediss://user:pw@cache.example:6380/1",
  );
});

Deno.test("config: a leading -- is ignored", () => {
  assert.equal(run(["--", "--port", "9000"]).port, 9000);
});

Deno.test("config: origins are normalised; * allows all", () => {
  assert.deepEqual(
    run(["--allow-origin", "https://a.example, http://b.example:8080/"])
      .allowOrigin,
    ["https://a.example", "http://b.example:8080"],
  );
  assert.equal(run(["--allow-origin", "*"]).allowOrigin, "*");
});

Deno.test("config: bad input is a one-line ConfigError", () => {
  for (
    const args of [
      ["--bogus"],
      ["--port"],
      ["--port", "abc"],
      ["--port", "70000"],
      ["--port", "-1"],
      ["--idle-timeout", "soon"],
      ["--log-format", "xml"],
      ["--allow-origin", "not an origin"],
      ["stray"],
      ["--port", "0x10"],
      ["--history", "1e2"],
      ["--history", " "],
      ["--rate-burst", "0"],
      ["--history-max", "0"],
      ["--data-sync", "off"],
      ["--redis", "http://localhost:6379"],
      ["--redis", "not a url"],
      ["--redis", "redis://127.0.0.1:6379/abc"],
      ["--redis", "redis://u:%zz@127.0.0.1:6379"],
      ["--redis-presence-ttl", "0"],
      ["--redis", "redis://127.0.0.1:6379", "--data", "h.db"],
    ]
  ) {
    assert.throws(() => parseConfig(args, noEnv), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.ok(!err.message.includes("\n"), err.message);
      return true;
    }, args.join(" "));
  }
  assert.throws(
    () => parseConfig([], (n) => n === "HUBBUB_HISTORY" ? "x" : undefined),
    /HUBBUB_HISTORY/,
  );
});

Deno.test("config: --help lists every flag with its default and variable", () => {
  const parsed = parseConfig(["--help"], noEnv);
  assert.equal(parsed.kind, "help");
  const text = helpText();
  for (
    const flag of [
      "port",
      "hostname",
      "max-message-bytes",
      "max-buffered-bytes",
      "max-echo-bytes",
      "idle-timeout",
      "rate-limit",
      "rate-burst",
      "max-connections",
      "max-connections-per-ip",
      "trust-proxy",
      "max-evicted-bytes",
      "max-memory",
      "history",
      "data",
      "history-max",
      "data-sync",
      "allow-origin",
      "log-format",
      "shutdown-timeout",
      "redis",
      "redis-presence-ttl",
    ]
  ) {
    assert.match(text, new RegExp(`--${flag} .*${envName(flag)}`));
  }
});
