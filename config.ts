/**
 * Command-line and environment settings: one table of flags, each with its
 * environment twin, default and help text, parsed once into a typed
 * {@link Config}. Both `main.ts` and `--help` read the same table, so a flag
 * cannot exist without documentation or an environment variable.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { DataSync } from "./history_db.ts";
import { redisUrlProblem } from "./redis_bus.ts";

/** How log lines are written. */
export type LogFormat = "text" | "json";

/** Every setting of a hubbub process, after validation. */
export interface Config {
  /** TCP port to listen on; 0 picks a free one. */
  port: number;
  /** Interface to listen on. */
  hostname: string;
  /** Largest chat message a client may send, in bytes (UTF-8). */
  maxMessageBytes: number;
  /** Unsent bytes a client may have queued before it is evicted. */
  maxBufferedBytes: number;
  /** Largest frame the `/echo` socket accepts, in bytes. */
  maxEchoBytes: number;
  /** Seconds without any frame (pong included) before a peer is dropped; 0 turns it off. */
  idleTimeout: number;
  /** Messages per second each connection may send; 0 turns the limit off. */
  rateLimit: number;
  /** Messages a connection may send in one burst above the rate. */
  rateBurst: number;
  /** Open sockets beyond which new upgrades get 503. */
  maxConnections: number;
  /** Open sockets per client address beyond which upgrades get 503; 0 turns it off. */
  maxConnectionsPerIp: number;
  /** Whether the client address is the right-most `X-Forwarded-For` entry. */
  trustProxy: boolean;
  /** Bytes evicted-but-unreleased sockets may pin before upgrades get 503; 0 turns it off. */
  maxEvictedBytes: number;
  /** Resident memory in bytes beyond which upgrades get 503; 0 turns it off. */
  maxMemory: number;
  /** Messages each room keeps in memory, for joins and reconnects. */
  history: number;
  /** Database file for durable history; empty keeps history in memory. */
  data: string;
  /** Messages each room keeps on disk with `data`, or in Redis with `redis`. */
  historyMax: number;
  /** How hard each history commit is pushed to the disk. */
  dataSync: DataSync;
  /** Extra origins allowed to open sockets, or `*` for any. */
  allowOrigin: string[] | "*";
  /** Log line format. */
  logFormat: LogFormat;
  /** Seconds a graceful shutdown may take before the process exits anyway. */
  shutdownTimeout: number;
  /** HS256 secret; auth is on when this or `jwtJwksUrl` is set. */
  jwtSecret: string | undefined;
  /** URL of the JSON Web Key Set with the RS256/ES256 keys. */
  jwtJwksUrl: string | undefined;
  /** Required `aud` claim. */
  jwtAudience: string | undefined;
  /** Required `iss` claim. */
  jwtIssuer: string | undefined;
  /** PEM certificate chain file; with `key`, serves https and wss. */
  cert: string | undefined;
  /** PEM private key file of `cert`. */
  key: string | undefined;
  /** Redis URL that joins instances into one chat; "" for none. */
  redis: string;
  /** Seconds an instance's members stay listed elsewhere without renewal. */
  redisPresenceTtl: number;
}

/** Turns a flag's raw text into its setting; `source` names it in errors. */
type Parser<T> = (raw: string, source: string) => T;

/** One setting: its flag name, default, `--help` line and parser. */
interface FlagSpec<T> {
  flag: string;
  default: string;
  help: string;
  parse: Parser<T>;
  /** A switch: `--flag` alone means "true" (a value may still follow `=`). */
  switch?: true;
}

/**
 * The flag table, keyed by {@link Config} field so that the type checker
 * insists on exactly one entry per setting; order is the order of `--help`.
 */
const FLAGS: { [K in keyof Config]: FlagSpec<Config[K]> } = {
  port: {
    flag: "port",
    default: "8080",
    help: "TCP port (0 picks a free one)",
    parse: toPort,
  },
  hostname: {
    flag: "hostname",
    default: "0.0.0.0",
    help: "interface to listen on",
    parse: toText,
  },
  maxMessageBytes: {
    flag: "max-message-bytes",
    default: "16384",
    help: "largest incoming chat message; larger closes 1009",
    parse: toInt,
  },
  maxBufferedBytes: {
    flag: "max-buffered-bytes",
    default: "1048576",
    help: "unsent bytes per client before it is evicted (1008)",
    parse: toInt,
  },
  maxEchoBytes: {
    flag: "max-echo-bytes",
    default: "1048576",
    help: "largest frame on /echo; larger closes 1009",
    parse: toInt,
  },
  idleTimeout: {
    flag: "idle-timeout",
    default: "60",
    help: "seconds without a pong before a peer is dropped (0 = off)",
    parse: toNumber,
  },
  rateLimit: {
    flag: "rate-limit",
    default: "20",
    help: "messages/s per connection (0 = off)",
    parse: toNumber,
  },
  rateBurst: {
    flag: "rate-burst",
    default: "40",
    help: "messages a connection may send at once above the rate",
    parse: toInt,
  },
  maxConnections: {
    flag: "max-connections",
    default: "10000",
    help: "open sockets beyond which upgrades get 503",
    parse: toInt,
  },
  maxConnectionsPerIp: {
    flag: "max-connections-per-ip",
    default: "1000",
    help:
      "open sockets per client address beyond which upgrades get 503 (0 = off)",
    parse: toInt,
  },
  trustProxy: {
    flag: "trust-proxy",
    default: "false",
    help: "client address from the right-most X-Forwarded-For entry",
    parse: toBoolean,
    switch: true,
  },
  maxEvictedBytes: {
    flag: "max-evicted-bytes",
    default: "268435456",
    help:
      "bytes evicted unclosed sockets may pin before upgrades get 503 (0 = off)",
    parse: toInt,
  },
  maxMemory: {
    flag: "max-memory",
    default: "0",
    help: "resident bytes beyond which upgrades get 503 (0 = off)",
    parse: toInt,
  },
  history: {
    flag: "history",
    default: "100",
    help: "messages kept per room in memory, sent on join",
    parse: toInt,
  },
  data: {
    flag: "data",
    default: "",
    help: "database file for durable history (created if absent)",
    parse: (raw) => raw,
  },
  historyMax: {
    flag: "history-max",
    default: "10000",
    help: "messages kept per room on disk with --data, or in Redis with " +
      "--redis (at least 1)",
    parse: toPositiveInt,
  },
  dataSync: {
    flag: "data-sync",
    default: "normal",
    help: "commit durability with --data: normal (survives kill -9) or " +
      "full (also power loss)",
    parse: toDataSync,
  },
  allowOrigin: {
    flag: "allow-origin",
    default: "",
    help: "extra browser origins, comma-separated, or *",
    parse: parseOrigins,
  },
  logFormat: {
    flag: "log-format",
    default: "text",
    help: "log line format: text or json",
    parse: toLogFormat,
  },
  shutdownTimeout: {
    flag: "shutdown-timeout",
    default: "5",
    help: "seconds a graceful shutdown may take",
    parse: toNumber,
  },
  jwtSecret: {
    flag: "jwt-secret",
    default: "",
    help: "HS256 secret: turns auth on; better passed as HUBBUB_JWT_SECRET, " +
      "as flags show in ps",
    parse: toOptional,
  },
  jwtJwksUrl: {
    flag: "jwt-jwks-url",
    default: "",
    help: "URL of a JWKS with RS256/ES256 keys: turns auth on",
    parse: toHttpUrl,
  },
  jwtAudience: {
    flag: "jwt-audience",
    default: "",
    help: "required aud claim of tokens",
    parse: toOptional,
  },
  jwtIssuer: {
    flag: "jwt-issuer",
    default: "",
    help: "required iss claim of tokens",
    parse: toOptional,
  },
  cert: {
    flag: "cert",
    default: "",
    help: "PEM certificate (chain) file: serves https/wss, needs --key",
    parse: toOptional,
  },
  key: {
    flag: "key",
    default: "",
    help: "PEM private key file of --cert",
    parse: toOptional,
  },
  redis: {
    flag: "redis",
    default: "",
    help: "redis:// or rediss:// URL joining instances into one chat",
    parse: toRedisUrl,
  },
  redisPresenceTtl: {
    flag: "redis-presence-ttl",
    default: "15",
    help: "seconds a dead instance's members stay listed (with --redis)",
    parse: toPositive,
  },
};

/** The table's entries in `--help` order. */
const SPECS: FlagSpec<unknown>[] = Object.values(FLAGS);

/** `--port` → `HUBBUB_PORT`. */
export function envName(flag: string): string {
  return "HUBBUB_" + flag.toUpperCase().replaceAll("-", "_");
}

/** A flag or environment value that cannot be used; the message is one line. */
export class ConfigError extends Error {
  /** Distinguishes it from other errors in logs. */
  override name = "ConfigError";
}

/** What the command line asked for. */
export type ParseResult =
  | { kind: "run"; config: Config }
  | { kind: "help"; text: string };

/**
 * Parses flags over environment variables over defaults. A leading `--` (as
 * left by `deno task start -- --port 9000`) is ignored.
 *
 * @throws {ConfigError} on an unknown flag, a missing or malformed value.
 */
export function parseConfig(
  args: string[],
  env: (name: string) => string | undefined,
): ParseResult {
  const argv = args[0] === "--" ? args.slice(1) : args;
  const options: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
  };
  for (const spec of SPECS) {
    options[spec.flag] = { type: spec.switch ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError(message.split("\n")[0]);
  }
  if (values.help) return { kind: "help", text: helpText() };

  /** Where a flag's value comes from, as error messages name it. */
  const source = (flag: string): string =>
    values[flag] !== undefined ? `--${flag}` : envName(flag);
  /** The setting from the command line, the environment or its default. */
  const read = <K extends keyof Config>(key: K): Config[K] => {
    const { flag, default: fallback, parse } = FLAGS[key];
    const given = values[flag];
    const raw = typeof given === "string"
      ? given
      : given === true
      ? "true"
      : env(envName(flag)) ?? fallback;
    return parse(raw, source(flag));
  };
  // FLAGS has an entry for every Config field (its mapped type says so), so
  // the object built from its keys is a whole Config.
  const config = Object.fromEntries(
    (Object.keys(FLAGS) as (keyof Config)[]).map((key) => [key, read(key)]),
  ) as unknown as Config;
  if (config.rateLimit > 0 && config.rateBurst < 1) {
    throw new ConfigError(
      `${source("rate-burst")}: must be at least 1 while the rate limit is on`,
    );
  }
  if (config.redis !== "" && config.data !== "") {
    throw new ConfigError(
      "--redis and --data cannot be used together: with Redis, history lives in Redis",
    );
  }
  if ((config.cert === undefined) !== (config.key === undefined)) {
    throw new ConfigError(
      config.cert === undefined
        ? `${source("key")} needs --cert too`
        : `${source("cert")} needs --key too`,
    );
  }
  return { kind: "run", config };
}

const WHOLE = /^\d{1,15}$/;
const DECIMAL = /^\d{1,15}(\.\d+)?$/;

function toInt(raw: string, source: string): number {
  if (!WHOLE.test(raw.trim())) {
    throw new ConfigError(
      `${source}: expected a whole number >= 0, got "${raw}"`,
    );
  }
  return Number(raw);
}

function toPositiveInt(raw: string, source: string): number {
  const n = toInt(raw, source);
  if (n < 1) throw new ConfigError(`${source}: must be at least 1`);
  return n;
}

function toDataSync(raw: string, source: string): DataSync {
  if (raw !== "normal" && raw !== "full") {
    throw new ConfigError(`${source}: expected normal or full, got "${raw}"`);
  }
  return raw;
}

function toPort(raw: string, source: string): number {
  const n = WHOLE.test(raw.trim()) ? Number(raw) : NaN;
  if (!(n >= 0 && n <= 65535)) {
    throw new ConfigError(`${source}: expected a port 0-65535, got "${raw}"`);
  }
  return n;
}

function toNumber(raw: string, source: string): number {
  if (!DECIMAL.test(raw.trim())) {
    throw new ConfigError(`${source}: expected a number >= 0, got "${raw}"`);
  }
  return Number(raw);
}

function toPositive(raw: string, source: string): number {
  const n = toNumber(raw, source);
  if (n === 0) throw new ConfigError(`${source}: must be more than 0`);
  return n;
}

function toText(raw: string, source: string): string {
  if (raw === "") throw new ConfigError(`${source}: must not be empty`);
  return raw;
}

function toBoolean(raw: string, source: string): boolean {
  const value = raw.trim().toLowerCase();
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new ConfigError(`${source}: expected true or false, got "${raw}"`);
}

/** An optional setting: empty means not set. */
function toOptional(raw: string): string | undefined {
  return raw === "" ? undefined : raw;
}

/**
 * `raw` as a URL whose scheme is one of `protocols`; otherwise `expected`
 * says, after `source`, what was wanted.
 */
function toUrl(
  raw: string,
  source: string,
  protocols: string[],
  expected: string,
): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${source}: "${raw}" is not a URL`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${source}: ${expected}`);
  }
  return url;
}

function toHttpUrl(raw: string, source: string): string | undefined {
  if (raw === "") return undefined;
  const expected = `expected an http(s) URL, got "${raw}"`;
  return toUrl(raw, source, ["https:", "http:"], expected).href;
}

function toRedisUrl(raw: string, source: string): string {
  if (raw === "") return "";
  toUrl(raw, source, ["redis:", "rediss:"], "expected redis:// or rediss://");
  const problem = redisUrlProblem(raw);
  if (problem !== null) throw new ConfigError(`${source}: ${problem}`);
  return raw;
}

function toLogFormat(raw: string, source: string): LogFormat {
  if (raw !== "text" && raw !== "json") {
    throw new ConfigError(`${source}: expected text or json, got "${raw}"`);
  }
  return raw;
}

/**
 * Parses an `--allow-origin` list into normalised origins (`scheme://host[:port]`).
 *
 * @throws {ConfigError} when an entry is not an origin.
 */
export function parseOrigins(raw: string, source: string): string[] | "*" {
  const items = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.includes("*")) return "*";
  return items.map((item) => {
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new ConfigError(`${source}: "${item}" is not an origin`);
    }
    if (url.origin === "null") {
      throw new ConfigError(`${source}: "${item}" is not an origin`);
    }
    return url.origin;
  });
}

/** The `--help` text: every flag, its environment twin and default. */
export function helpText(): string {
  const lines = [
    "hubbub: a real-time WebSocket chat server",
    "",
    "usage: hubbub [flags]",
    "       hubbub connect [flags] URL   (the client: hubbub connect --help)",
    "",
    "flags (each also read from its environment variable):",
  ];
  for (const { flag, default: fallback, help } of SPECS) {
    const def = fallback === "" ? "none" : fallback;
    lines.push(
      `  --${flag.padEnd(23)} ${help} (default ${def}; ${envName(flag)})`,
    );
  }
  lines.push("  --help                    show this text");
  return lines.join("\n");
}
