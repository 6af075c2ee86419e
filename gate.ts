/**
 * The gate a socket passes before its upgrade: a well-formed WebSocket
 * request, an allowed origin, valid room and recovery parameters, and room
 * under the connection caps. Every check that can refuse a socket lives
 * here, so the routes in `mod.ts` only upgrade what the gate admitted, and a
 * refusal is always an HTTP answer with a plain-text reason, never a half
 * open socket.
 *
 * @module
 */

import type { Metrics } from "./metrics.ts";
import { DEFAULT_ROOM, isRoomName, JSON_SUBPROTOCOL } from "./protocol.ts";

/** What the gate needs to know of the instance it guards. */
export interface GateOptions {
  /** Extra allowed browser origins, or `*`. */
  allowOrigin: string[] | "*";
  /** Open sockets beyond which upgrades get 503. */
  maxConnections: number;
  /** Open sockets per client address beyond which upgrades get 503; 0 = off. */
  maxConnectionsPerIp: number;
  /** Sockets the address holds now. */
  connectionsFrom(address: string): number;
  /** Why the process takes no more sockets now (load shedding), or null. */
  shed(): string | null;
  /** Counters for refusals. */
  metrics: Metrics;
  /** Sockets currently held, for the cap. */
  connections(): number;
  /** True once shutdown began. */
  closing(): boolean;
}

/** A chat socket the gate let through, with its handshake's parameters. */
export interface ChatAdmission {
  /** Room to join. */
  room: string;
  /** Whether the client offered the JSON subprotocol. */
  json: boolean;
  /** The name asked for with `?name=`, unchecked; null when absent. */
  name: string | null;
  /** Last seq the client saw, for reconnects. */
  since?: number;
  /** The room epoch `since` belongs to. */
  epoch?: string;
}

const WHOLE_NUMBER = /^\d{1,15}$/;
/** RFC 6455 4.1: a random 16-byte value, base64-encoded (24 characters). */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;
const EPOCH = /^[A-Za-z0-9-]{1,36}$/;

/** Decides, before any upgrade, whether a socket may open. */
export class Gate {
  readonly #opts: GateOptions;

  /** A gate enforcing `opts`. */
  constructor(opts: GateOptions) {
    this.#opts = opts;
  }

  /**
   * Admits a `/ws` request from `address` (null when unknown), or answers
   * why not.
   */
  chat(
    req: Request,
    url: URL,
    address: string | null = null,
  ): ChatAdmission | Response {
    const bad = upgradeProblem(req);
    if (bad) return refusal(400, bad);
    const room = url.searchParams.get("room") ?? DEFAULT_ROOM;
    if (!isRoomName(room)) {
      return refusal(400, "room must be 1-64 characters of A-Z a-z 0-9 _ . -");
    }
    const sinceRaw = url.searchParams.get("since");
    if (sinceRaw !== null && !WHOLE_NUMBER.test(sinceRaw)) {
      return refusal(400, "since must be a whole number >= 0");
    }
    const epoch = url.searchParams.get("epoch") ?? undefined;
    if (epoch !== undefined && !EPOCH.test(epoch)) {
      return refusal(400, "epoch must be the one from the welcome");
    }
    const refused = this.#access(req, address);
    if (refused) return refused;
    return {
      room,
      json: offeredProtocols(req.headers.get("sec-websocket-protocol"))
        .includes(JSON_SUBPROTOCOL),
      name: url.searchParams.get("name"),
      ...(sinceRaw === null ? {} : { since: Number(sinceRaw) }),
      ...(epoch === undefined ? {} : { epoch }),
    };
  }

  /** Admits an `/echo` request from `address` (null), or answers why not. */
  echo(req: Request, address: string | null = null): Response | null {
    const bad = upgradeProblem(req);
    if (bad) return refusal(400, bad);
    return this.#access(req, address);
  }

  /** The checks every socket route shares, after the request is valid. */
  #access(req: Request, address: string | null): Response | null {
    const opts = this.#opts;
    if (!originAllowed(req, opts.allowOrigin)) {
      return refusal(403, "origin not allowed");
    }
    if (opts.closing()) return refusal(503, "server shutting down");
    if (opts.connections() >= opts.maxConnections) {
      opts.metrics.rejectedConnections++;
      return refusal(503, "too many connections");
    }
    if (
      address !== null && opts.maxConnectionsPerIp > 0 &&
      opts.connectionsFrom(address) >= opts.maxConnectionsPerIp
    ) {
      opts.metrics.rejectedConnections++;
      return refusal(503, "too many connections from your address");
    }
    const shed = opts.shed();
    if (shed !== null) {
      opts.metrics.rejectedConnections++;
      return refusal(503, shed);
    }
    return null;
  }
}

/** A plain-text refusal, as every route answers one. */
export function refusal(status: number, reason: string): Response {
  return new Response(reason + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** Why `req` is not a WebSocket upgrade, or null when it is one. */
function upgradeProblem(req: Request): string | null {
  if (req.method !== "GET") return "WebSocket upgrade needs GET";
  const upgrade = req.headers.get("upgrade")?.toLowerCase();
  if (upgrade !== "websocket") return "expected a WebSocket upgrade request";
  const connection = req.headers.get("connection")?.toLowerCase() ?? "";
  if (!connection.split(",").some((t) => t.trim() === "upgrade")) {
    return "Connection header must include Upgrade";
  }
  if (req.headers.get("sec-websocket-version") !== "13") {
    return "Sec-WebSocket-Version must be 13";
  }
  const key = req.headers.get("sec-websocket-key");
  if (!key) return "missing Sec-WebSocket-Key";
  if (!WEBSOCKET_KEY.test(key)) {
    return "Sec-WebSocket-Key must be 16 bytes in base64";
  }
  return null;
}

/**
 * The subprotocols a `Sec-WebSocket-Protocol` value offers, in order. It is
 * an HTTP list: `a,b`, `a, b` and `a,  b` are the same offer, and repeated
 * headers arrive joined by `Headers.get` with ", ". Pure, so that every
 * reader of the offer (the JSON choice, a `bearer.<JWT>` entry) reads the
 * same list.
 */
export function offeredProtocols(header: string | null): string[] {
  if (header === null) return [];
  return header.split(",").map((p) => p.trim()).filter((p) => p !== "");
}

/**
 * Browsers send Origin; it must be the server's own (host equals Host) or
 * listed. Clients without Origin are not browsers and are accepted.
 */
function originAllowed(req: Request, allowed: string[] | "*"): boolean {
  const origin = req.headers.get("origin");
  if (origin === null || allowed === "*") return true;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false;
  }
  if (parsed.host === normalizeHost(req.headers.get("host"))) return true;
  return allowed.includes(parsed.origin);
}

/** Host as URL would write it: lower case, default port dropped. */
function normalizeHost(host: string | null): string | null {
  if (host === null) return null;
  try {
    return new URL(`http://${host}`).host;
  } catch {
    return null;
  }
}
