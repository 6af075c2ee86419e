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
import type { ClientLimits } from "./client.ts";
import { Connections } from "./connections.ts";
import { FAVICON, FAVICON_CACHE, FAVICON_TYPE } from "./favicon.ts";
import type { DataSync } from "./history_db.ts";
import { Hub } from "./hub.ts";
import { type Logger, silentLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { TokenLifetimes } from "./expiry.ts";
import { Gate, refusal } from "./gate.ts";
import { clientAddress } from "./addresses.ts";
import { LoadGuard } from "./guard.ts";
import { Opener } from "./opening.ts";
import { openStorage } from "./storage.ts";
import page from "./static/home.html" with { type: "text" };

/**
 * Settings of an instance; every field has the command line's default.
 * Auth is on when `jwtSecret` or `jwtJwksUrl` is set (see {@link AuthOptions}).
 */
export interface HubbubOptions extends AuthOptions {
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
  /** Messages kept per room in memory (sent on join); default 100. */
  history?: number;
  /**
   * Database file for durable history (created if absent); default none:
   * history in memory only. Needs read and write permission for the file
   * and its `-wal` and `-journal` siblings. Not with `redis`.
   */
  data?: string;
  /**
   * Messages kept per room on disk with `data`, or in Redis (approximately)
   * with `redis`; default 10000.
   */
  historyMax?: number;
  /** Commit durability with `data`; default `normal`. */
  dataSync?: DataSync;
  /**
   * `redis://` or `rediss://` URL: several instances share rooms through
   * this Redis; default none (this process is the whole chat).
   */
  redis?: string;
  /**
   * Seconds this instance's members stay listed on other instances without
   * renewal (renewed every third of it); default 15.
   */
  redisPresenceTtl?: number;
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
  handler: (
    req: Request,
    info?: Deno.ServeHandlerInfo,
  ) => Response | Promise<Response>;
  /**
   * Refuses new sockets, closes every open one with 1001 "server shutting
   * down" and resolves once they are closed, or after `timeoutMs`.
   */
  close(timeoutMs?: number): Promise<void>;
  /** The instance's counters. */
  metrics: Metrics;
}

/**
 * Headers of the page. The policy is defence in depth on top of rendering
 * chat text with textContent: only the page's own inline script runs (by
 * hash), and it may connect only to its own origin.
 */
const HTML_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "x-content-type-options": "nosniff",
  "content-security-policy": [
    "default-src 'none'",
    `script-src '${await inlineScriptHash(page)}'`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
};
const PAGE_BYTES = new TextEncoder().encode(page);

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
  const base = (options.basePath ?? "").replace(/\/+$/, "");
  const maxEchoBytes = options.maxEchoBytes ?? 1 << 20;
  const idleTimeout = options.idleTimeout ?? 60;
  const maxConnections = options.maxConnections ?? 10000;
  const trustProxy = options.trustProxy ?? false;
  const allowOrigin = options.allowOrigin ?? [];
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
  const limits: ClientLimits = {
    maxMessageBytes: options.maxMessageBytes ?? 16 << 10,
    rateLimit: options.rateLimit ?? 20,
    rateBurst: options.rateBurst ?? 40,
  };
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
    allowOrigin,
    maxConnections,
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
    idleTimeout,
    limits,
    echo: { maxEchoBytes, maxBufferedBytes },
    hub,
    metrics,
    logger,
    connections,
    lifetimes,
  });

  function handler(
    req: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> {
    const url = new URL(req.url);
    if (!url.pathname.startsWith(base)) return refusal(404, "not found");
    const path = url.pathname.slice(base.length);
    switch (path) {
      case "":
        return new Response(null, {
          status: 308,
          headers: { location: base + "/" + url.search },
        });
      case "/":
        return readOnly(
          req,
          () =>
            new Response(PAGE_BYTES, {
              headers: {
                ...HTML_HEADERS,
                "content-length": String(PAGE_BYTES.byteLength),
              },
            }),
        );
      case "/favicon.ico":
        return readOnly(req, () =>
          new Response(FAVICON, {
            headers: {
              "content-type": FAVICON_TYPE,
              "cache-control": FAVICON_CACHE,
            },
          }));
      case "/ws": {
        const address = clientAddress(req, info?.remoteAddr, trustProxy);
        return opener.chat(req, gate.chat(req, url, address), address);
      }
      case "/echo": {
        const address = clientAddress(req, info?.remoteAddr, trustProxy);
        return opener.echo(req, gate.echo(req, url, address), address);
      }
      case "/auth":
        return readOnly(req, () => gate.authCheck(req, url));
      case "/healthz":
        return readOnly(req, health);
      case "/metrics":
        return readOnly(req, () =>
          new Response(
            metrics.render({
              connections: connections.served,
              evictedUnclosed: connections.unreleased,
              evictedBytes: connections.pinnedBytes(),
              rooms: hub.roomCount,
              historyMessages: history.size(),
              historyStored: history.stored(),
              ...(bus ? { redis: bus.state } : {}),
            }),
            {
              headers: {
                "content-type": "text/plain; version=0.0.4; charset=utf-8",
              },
            },
          ));
      default:
        return refusal(404, "not found");
    }
  }

  /**
   * With Redis unreachable the instance is `degraded`, answered 503 so that
   * a load balancer sends new clients to an instance that can deliver.
   */
  function health(): Response {
    const degraded = bus !== null && !bus.state.up;
    return Response.json({
      status: closing ? "stopping" : degraded ? "degraded" : "ok",
      connections: connections.served,
      rooms: hub.roomCount,
      uptime: Math.round(metrics.uptimeSeconds() * 1000) / 1000,
      ...(bus ? { redis: bus.state.up ? "up" : "down" } : {}),
    }, { status: degraded && !closing ? 503 : 200 });
  }

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

/** GET and HEAD only; anything else is 405 with the `Allow` header. */
function readOnly(
  req: Request,
  answer: () => Response | Promise<Response>,
): Response | Promise<Response> {
  if (req.method === "GET") return answer();
  if (req.method === "HEAD") {
    const res = answer();
    return res instanceof Promise ? res.then(withoutBody) : withoutBody(res);
  }
  return new Response("method not allowed\n", {
    status: 405,
    headers: { allow: "GET, HEAD", "content-type": "text/plain" },
  });
}

/** `res` with its status and headers but no body, for HEAD. */
function withoutBody(res: Response): Response {
  return new Response(null, { status: res.status, headers: res.headers });
}

/**
 * CSP source for the page's one inline script, so nothing else may run.
 * Web Crypto rather than node:crypto's createHash: importing node:crypto
 * alone added 9 MB to an idle server's RSS. Awaited once at module load
 * (a top-level await) so that `GET /` stays synchronous.
 */
async function inlineScriptHash(html: string): Promise<string> {
  const script = html.match(/<script>([\s\S]*?)<\/script>/);
  if (!script) throw new Error("static/home.html has no inline script");
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(script[1]),
  );
  return "sha256-" + new Uint8Array(digest).toBase64();
}
