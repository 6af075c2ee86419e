/**
 * The HTTP side of an instance: which path answers what, under its base
 * path. The page and the icon are answered here, the socket routes go
 * through the gate to the opener, and `/healthz` and `/metrics` read the
 * instance's state.
 *
 * @module
 */

import type { Connections } from "./connections.ts";
import { FAVICON, FAVICON_CACHE, FAVICON_TYPE } from "./favicon.ts";
import { clientAddress } from "./addresses.ts";
import { type Gate, refusal } from "./gate.ts";
import type { HistoryStore } from "./history.ts";
import type { Hub } from "./hub.ts";
import type { Metrics } from "./metrics.ts";
import type { Opener } from "./opening.ts";
import type { RedisBus } from "./redis_bus.ts";
import page from "./static/home.html" with { type: "text" };

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

/** Answers one request; asynchronously only where a token is verified. */
export type Handler = (
  req: Request,
  info?: Deno.ServeHandlerInfo,
) => Response | Promise<Response>;

/** What the routes answer from. */
export interface RoutesOptions {
  /** Path prefix the routes are under, e.g. `/chat`; trailing slashes ignored. */
  basePath: string;
  /** Take the client address from the right-most `X-Forwarded-For` entry. */
  trustProxy: boolean;
  /** Checks every upgrade and `/auth`. */
  gate: Gate;
  /** Opens what the gate admitted. */
  opener: Opener;
  /** Rooms, for `/healthz` and `/metrics`. */
  hub: Hub;
  /** The history store, for `/metrics`. */
  history: HistoryStore;
  /** With `redis`: its link state, for `/healthz` and `/metrics`. */
  bus: RedisBus | null;
  /** The counters `/metrics` renders. */
  metrics: Metrics;
  /** Held sockets, for `/healthz` and `/metrics`. */
  connections: Connections;
  /** Whether the instance is shutting down. */
  closing(): boolean;
}

/** The request handler of an instance. */
export function createHandler(options: RoutesOptions): Handler {
  const base = options.basePath.replace(/\/+$/, "");
  const { trustProxy, gate, opener, hub, history, bus, metrics, connections } =
    options;

  /**
   * With Redis unreachable the instance is `degraded`, answered 503 so that
   * a load balancer sends new clients to an instance that can deliver.
   */
  function health(): Response {
    const closing = options.closing();
    const degraded = bus !== null && !bus.state.up;
    return Response.json({
      status: closing ? "stopping" : degraded ? "degraded" : "ok",
      connections: connections.served,
      rooms: hub.roomCount,
      uptime: Math.round(metrics.uptimeSeconds() * 1000) / 1000,
      ...(bus ? { redis: bus.state.up ? "up" : "down" } : {}),
    }, { status: degraded && !closing ? 503 : 200 });
  }

  function exposition(): Response {
    return new Response(
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
    );
  }

  return (req, info) => {
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
        return readOnly(req, exposition);
      default:
        return refusal(404, "not found");
    }
  };
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
