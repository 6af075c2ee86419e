/**
 * The command line of `hubbub connect`: its flags, its help text, its exit
 * codes, and the socket address and subprotocol offer they come to. Pure (no
 * I/O), so every rule here is tested without a network.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BEARER_PREFIX, JSON_SUBPROTOCOL } from "./protocol.ts";

/**
 * Exit codes of `hubbub connect` (SPEC section 9), for scripts that tell a
 * refused login from a server that is down.
 */
export const EXIT = {
  /** The session ended with a clean close. */
  ok: 0,
  /** The connection dropped or was closed abnormally. */
  dropped: 1,
  /** Bad flags or URL. */
  usage: 2,
  /** No connection: nothing listening, name lookup or TLS failed. */
  unreachable: 3,
  /** The server answered the upgrade with an HTTP error status. */
  refused: 4,
} as const;

/** One of {@link EXIT}'s values. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/** What `hubbub connect` was asked to do, after validation. */
export interface ConnectOptions {
  /** The socket URL (`ws:` or `wss:`), with `--room` and `--nick` applied. */
  url: URL;
  /** Print the server's JSON objects as they are, one per line. */
  json: boolean;
  /** Reconnect with backoff after the connection is lost. */
  reconnect: boolean;
  /** `Sec-WebSocket-Protocol` entries to offer, in order. */
  protocols: string[];
}

/** A flag or URL that cannot be used; the message is one line. */
export class UsageError extends Error {
  /** Distinguishes it from other errors in logs. */
  override name = "UsageError";
}

/** What the `connect` command line asked for. */
export type ConnectCommand =
  | { kind: "run"; options: ConnectOptions }
  | { kind: "help"; text: string };

/**
 * A JWT is three base64url parts joined by dots; all of it is a valid HTTP
 * token, which a `Sec-WebSocket-Protocol` entry must be.
 */
const JWT_CHARS = /^[A-Za-z0-9_.-]+$/;

/**
 * Parses `connect`'s arguments (those after the word `connect`). A leading
 * `--` is ignored, as for the server.
 *
 * @throws {UsageError} on an unknown flag, a missing or second URL, a URL
 * that is not `ws:`/`wss:` (`http:`/`https:` are taken as their socket
 * twins), or a token that cannot travel in a subprotocol entry.
 */
export function parseConnectArgs(args: string[]): ConnectCommand {
  const argv = args[0] === "--" ? args.slice(1) : args;
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        room: { type: "string" },
        nick: { type: "string" },
        json: { type: "boolean" },
        token: { type: "string" },
        reconnect: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new UsageError(message.split("\n")[0]);
  }
  if (values.help) return { kind: "help", text: connectHelpText() };
  if (positionals.length === 0) throw new UsageError("missing URL");
  if (positionals.length > 1) {
    throw new UsageError(`one URL expected, got "${positionals[1]}" too`);
  }
  const url = socketUrl(positionals[0]);
  const room = values.room;
  if (typeof room === "string") url.searchParams.set("room", room);
  const nick = values.nick;
  if (typeof nick === "string") url.searchParams.set("name", nick);
  const token = values.token;
  if (typeof token === "string" && !JWT_CHARS.test(token)) {
    throw new UsageError(
      "--token: a JWT has only A-Z a-z 0-9 - _ . characters",
    );
  }
  return {
    kind: "run",
    options: {
      url,
      json: values.json === true,
      reconnect: values.reconnect === true,
      protocols: offeredProtocols(url, token as string | undefined),
    },
  };
}

/** Parses the URL argument into a `ws:`/`wss:` URL. */
function socketUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`"${raw}" is not a URL (try ws://HOST:PORT/ws)`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UsageError(`"${raw}" is not a ws:// or wss:// URL`);
  }
  url.hash = "";
  return url;
}

/**
 * The subprotocols to offer. A chat socket is offered `hubbub.v1` so that
 * the client can show names and times and resume after a reconnect; the
 * echo socket (its path ends in `/echo`) is offered nothing, so that it stays
 * the plain echo client of the seed design. A token rides along as a
 * `bearer.` entry, which a server never echoes back.
 */
export function offeredProtocols(url: URL, token?: string): string[] {
  const isEcho = /\/echo\/?$/.test(url.pathname);
  return [
    ...(isEcho ? [] : [JSON_SUBPROTOCOL]),
    ...(token === undefined ? [] : [BEARER_PREFIX + token]),
  ];
}

/**
 * The URL of one connection attempt: the base URL plus, when resuming a
 * JSON session, the last seq shown and the epoch it came from.
 */
export function attemptUrl(
  base: URL,
  resume: { since: number; epoch: string } | null,
): URL {
  const url = new URL(base);
  if (resume) {
    url.searchParams.set("since", String(resume.since));
    url.searchParams.set("epoch", resume.epoch);
  }
  return url;
}

/** First reconnect delay, before jitter. */
const BACKOFF_BASE_MS = 250;
/** Longest reconnect delay: a restarted server is found within this. */
const BACKOFF_CAP_MS = 10_000;

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential up to a
 * cap, with "equal jitter" (half fixed, half random) so that the clients of
 * a restarted server do not all come back in the same millisecond.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/** The `hubbub connect --help` text. */
export function connectHelpText(): string {
  return [
    "hubbub connect: a command-line chat and echo client",
    "",
    "usage: hubbub connect [flags] URL",
    "",
    "  URL is ws://HOST:PORT/ws (chat) or ws://HOST:PORT/echo (echo); wss://",
    "  for TLS. Lines read from stdin are sent as messages; what arrives is",
    "  printed one message per line: chat on stdout as [HH:MM] name: text,",
    "  joins, leaves, errors and gaps on stderr. On EOF or Ctrl-C the client",
    "  closes the socket (1000) and exits.",
    "",
    "flags:",
    "  --room NAME    room to join (sets ?room=)",
    "  --nick NAME    name to use (sets ?name=)",
    "  --json         print the server's JSON objects as they are, one a line",
    "  --token JWT    token for a server with auth (sent as a bearer.<JWT>",
    "                 Sec-WebSocket-Protocol entry)",
    "  --reconnect    reconnect with backoff when the connection is lost,",
    "                 resuming after the last message shown",
    "  --help         show this text",
    "",
    "in a chat, /nick NAME changes your name and /who lists the room",
    "",
    "exit codes: 0 clean close; 1 connection dropped or closed abnormally;",
    "2 bad usage; 3 could not connect (refused, name lookup, TLS);",
    "4 refused at the upgrade (HTTP status and reason on stderr)",
  ].join("\n");
}
