/**
 * The embeddable hubbub server: options in, a request handler and `close()`
 * out. Mount the handler in any Deno app (a plain `Deno.serve`, Hono, Oak,
 * Fresh); `main.ts` is only a command-line shell around it.
 *
 * @example Mount the chat under /chat of an existing app
 * ```ts
 * import { createHubbub } from "./mod.ts";
 * const chat = createHubbub({ basePath: "/chat" });
 * Deno.serve((req) =>
 *   new URL(req.url).pathname.startsWith("/chat")
 *     ? chat.handler(req)
 *     : new Response("my app"),
 * );
 * ```
 *
 * @module
 */

import { Auth, type AuthOptions } from "./auth.ts";
import { Connections } from "./connections.ts";
import { Hub } from "./hub.ts";
import { type Logger, silentLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { TokenLifetimes } from "./expiry.ts";
import { Gate } from "./gate.ts";
import { LoadGuard } from "./guard.ts";
import { Opener } from "./opening.ts";
import { createHandler, type Handler } from "./routes.ts";
import { openStorage, type StorageOptions } from "./storage.ts";

/**
 * Settings of an instance; every field has the command line's default.
 * Auth is on when `jwtSecret` or `jwtJwksUrl` is set (see {@link AuthOptions}).
 */
export interface HubbubOptions extends AuthOptions, StorageOptions {
  /** Path prefix the handler is mounted under, e.g. `/chat`; default none. */
  basePath?: string;
  /** Largest incoming chat message in bytes; default 16 KiB. */
  maxMessageBytes?: number;
  /** Unsent bytes per client before eviction; default 1 MiB. */
  maxBufferedBytes?: number;
  /** Largest `/echo` frame in bytes; default 1 MiB. */
  maxEchoBytes?: number;
  /** Seconds without a pong before a peer is dropped, 0 = off; default 60. */
  idleTimeout?: number;
  /** Messages/s per connection, 0 = off; default 20. */
  rateLimit?: number;
  /** Burst above the rate; default 40. */
  rateBurst?: number;
  /** Open sockets beyond which upgrades get 503; default 10000. */
  maxConnections?: number;
  /** Open sockets per client address beyond which upgrades get 503, 0 = off; default 1000. */
  maxConnectionsPerIp?: number;
  /** Take the client address from the right-most `X-Forwarded-For` entry; default false. */
  trustProxy?: boolean;
  /** Bytes evicted-but-unreleased sockets may pin before upgrades get 503, 0 = off; default 256 MiB. */
  maxEvictedBytes?: number;
  /** Resident memory beyond which upgrades get 503, 0 = off; default off. */
  maxMemory?: number;
  /** Extra allowed browser origins, or `*`; default none. */
  allowOrigin?: string[] | "*";
  /** Where log lines go; default nowhere. */
  logger?: Logger;
}

/** A running hubbub instance. */
export interface Hubbub {
  /**
   * Answers every request under `basePath`; asynchronously only where a
   * token is verified. `info` is Deno.serve's second argument: without it
   * (or `trustProxy`) no address is known, and `maxConnectionsPerIp` does
   * not apply.
   */
  handler: Handler;
  /**
   * Refuses new sockets, closes every open one with 1001 "server shutting
   * down" and resolves once they are closed, or after `timeoutMs`.
   */
  close(timeoutMs?: number): Promise<void>;
  /** The instance's counters. */
  metrics: Metrics;
}

/**
 * Default of `--max-connections-per-ip`: a tenth of the default
 * `--max-connections`, so that one address cannot lock everyone else out
 * (50 never-reading peers from one address filled a cap of 50), while a
 * large NAT, or a proxy whose address is not unwrapped (`--trust-proxy`),
 * still fits.
 */
const DEFAULT_MAX_CONNECTIONS_PER_IP = 1000;

/**
 * Default of `--max-evicted-bytes`: about 230 evicted peers at the default
 * `--max-buffered-bytes` (1.1 MB each, measured), a quarter of a gigabyte
 * that no reader is taking.
 */
const DEFAULT_MAX_EVICTED_BYTES = 256 * 1024 * 1024;

/**
 * Deno's server WebSocket copies every frame into a per-socket buffer that
 * keeps the size of the largest frame the socket was ever sent, until the
 * socket closes: 1.4 MB welcomes grew the server 2.4 MB per client. With
 * vectored writes (this variable, which Deno reads when the first socket
 * opens) frames over a kilobyte are written from their own memory, one
 * system call per frame either way. Deno's HTTP/1 server reads the same
 * variable and writes responses vectored too: the same bytes.
 */
const VECTORED_WRITES_ENV = "DENO_USE_WRITEV";

/**
 * Builds a hubbub instance.
 *
 * @throws {DataFileError} when `data` names a file that cannot be used.
 */
export function createHubbub(options: HubbubOptions = {}): Hubbub {
  const logger = options.logger ?? silentLogger;
  useVectoredWrites(logger);
  const metrics = new Metrics();
  const { history, bus } = openStorage(options, logger, metrics);
  const maxBufferedBytes = options.maxBufferedBytes ?? 1 << 20;
  const hub = new Hub({
    maxBufferedBytes,
    history,
    metrics,
    ...(bus ? { relay: bus } : {}),
  });
  bus?.attach(hub);
  /** Set once by `close()`: the gate refuses upgrades from then on. */
  let closing = false;

  const connections = new Connections({
    metrics,
    logger,
    released: (socket) => lifetimes.forget(socket),
  });
  const auth = Auth.fromOptions(options, logger);
  // An expired token's socket leaves through closeSocket like any other the
  // server gives up on: counted among those being let go until Deno
  // releases it, never closed behind a queue its peer does not read.
  const lifetimes = new TokenLifetimes(
    auth,
    logger,
    (socket, code, text) => connections.closeSocket(socket, code, text),
  );
  const guard = new LoadGuard({
    maxEvictedBytes: options.maxEvictedBytes ?? DEFAULT_MAX_EVICTED_BYTES,
    evictedBytes: () => connections.pinnedBytes(),
    maxMemory: options.maxMemory ?? 0,
    logger,
  });
  const gate = new Gate({
    allowOrigin: options.allowOrigin ?? [],
    maxConnections: options.maxConnections ?? 10000,
    maxConnectionsPerIp: options.maxConnectionsPerIp ??
      DEFAULT_MAX_CONNECTIONS_PER_IP,
    connectionsFrom: (address) => connections.heldBy(address),
    shed: () => guard.refusal(),
    metrics,
    auth,
    logger,
    connections: () => connections.size,
    closing: () => closing,
  });
  const opener = new Opener({
    idleTimeout: options.idleTimeout ?? 60,
    limits: {
      maxMessageBytes: options.maxMessageBytes ?? 16 << 10,
      rateLimit: options.rateLimit ?? 20,
      rateBurst: options.rateBurst ?? 40,
    },
    echo: { maxEchoBytes: options.maxEchoBytes ?? 1 << 20, maxBufferedBytes },
    hub,
    metrics,
    logger,
    connections,
    lifetimes,
  });
  const handler = createHandler({
    basePath: options.basePath ?? "",
    trustProxy: options.trustProxy ?? false,
    gate,
    opener,
    hub,
    history,
    bus,
    metrics,
    connections,
    closing: () => closing,
  });

  async function close(timeoutMs = 5000): Promise<void> {
    closing = true;
    lifetimes.stop();
    connections.closeAll();
    for (const member of hub.members()) hub.leave(member);
    hub.stop();
    history.close();
    connections.stop();
    await bus?.close();
    await connections.allReleased(timeoutMs);
  }

  return { handler, close, metrics };
}

/**
 * Turns on Deno's vectored WebSocket writes unless the variable is already
 * set (an empty value is Deno's way to say off). Must run before the
 * process opens its first WebSocket.
 */
function useVectoredWrites(logger: Logger): void {
  const access = Deno.permissions.querySync({
    name: "env",
    variable: VECTORED_WRITES_ENV,
  });
  if (access.state !== "granted") {
    logger.log("warn", "cannot read or set " + VECTORED_WRITES_ENV, {
      need: `--allow-env=${VECTORED_WRITES_ENV}`,
      effect: "unless it is set, each socket keeps a buffer the size of " +
        "the largest frame it was sent",
    });
    return;
  }
  if (Deno.env.get(VECTORED_WRITES_ENV) === undefined) {
    Deno.env.set(VECTORED_WRITES_ENV, "1");
  }
}
