/**
 * The gate a socket passes before its upgrade: a well-formed WebSocket
 * request, an allowed origin, valid room and recovery parameters, a valid
 * token when auth is on, and room under the connection caps. Every check
 * that can refuse a socket lives here, so opening.ts only upgrades what the
 * gate admitted, and a refusal is always an HTTP answer with a plain-text
 * reason, never a half open socket.
 *
 * @module
 */

import {
  type Auth,
  type AuthFailure,
  type Identity,
  isAuthFailure,
  ROOM_REFUSED,
  roomAllowed,
} from "./auth.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import {
  BEARER_PREFIX,
  DEFAULT_ROOM,
  isRoomName,
  JSON_SUBPROTOCOL,
} from "./protocol.ts";

/**
 * A token-free entry the server selects when a client offers it beside
 * `bearer.<JWT>` and no `hubbub.v1`. Browsers fail a handshake whose answer
 * selects none of the protocols they offered, and the token entry itself is
 * never echoed; so a browser using the plain protocol or `/echo` offers
 * `["bearer", "bearer.<JWT>"]`. A client offering only the token entry gets
 * no protocol selected, which non-browser clients accept.
 */
export const BEARER_PROTOCOL = "bearer";

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
  /** Token verification; null when auth is off. */
  auth: Auth | null;
  /** Where refusals by auth are logged. */
  logger: Logger;
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
  /** The subprotocol to select in the handshake, if any. */
  protocol: string | null;
  /** The name asked for with `?name=`, unchecked; null when absent. */
  name: string | null;
  /** Who the token says the client is; null when auth is off. */
  identity: Identity | null;
  /** Last seq the client saw, for reconnects. */
  since?: number;
  /** The room epoch `since` belongs to. */
  epoch?: string;
}

/** An `/echo` socket the gate let through. */
export interface EchoAdmission {
  /** The subprotocol to select in the handshake, if any. */
  protocol: string | null;
  /** Who the token says the client is; null when auth is off. */
  identity: Identity | null;
}

/** What a gate check gives: synchronous unless a token must be verified. */
export type Admitted<T> = T | Response | Promise<T | Response>;

const ROOM_RULE = "room must be 1-64 characters of A-Z a-z 0-9 _ . -";
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
  ): Admitted<ChatAdmission> {
    const bad = upgradeProblem(req);
    if (bad) return refusal(400, bad);
    const room = url.searchParams.get("room") ?? DEFAULT_ROOM;
    if (!isRoomName(room)) return refusal(400, ROOM_RULE);
    const sinceRaw = url.searchParams.get("since");
    if (sinceRaw !== null && !WHOLE_NUMBER.test(sinceRaw)) {
      return refusal(400, "since must be a whole number >= 0");
    }
    const epoch = url.searchParams.get("epoch") ?? undefined;
    if (epoch !== undefined && !EPOCH.test(epoch)) {
      return refusal(400, "epoch must be the one from the welcome");
    }
    if (!originAllowed(req, this.#opts.allowOrigin)) {
      return refusal(403, "origin not allowed");
    }
    const offered = offeredProtocols(req.headers.get("sec-websocket-protocol"));
    const json = offered.includes(JSON_SUBPROTOCOL);
    const name = url.searchParams.get("name");
    return this.#admit(url, address, offered, room, (identity) => ({
      room,
      json,
      protocol: selectedProtocol(offered, json),
      name,
      identity,
      ...(sinceRaw === null ? {} : { since: Number(sinceRaw) }),
      ...(epoch === undefined ? {} : { epoch }),
    }));
  }

  /**
   * Admits an `/echo` request from `address` (null when unknown), or
   * answers why not.
   */
  echo(
    req: Request,
    url: URL,
    address: string | null = null,
  ): Admitted<EchoAdmission> {
    const bad = upgradeProblem(req);
    if (bad) return refusal(400, bad);
    if (!originAllowed(req, this.#opts.allowOrigin)) {
      return refusal(403, "origin not allowed");
    }
    const offered = offeredProtocols(req.headers.get("sec-websocket-protocol"));
    return this.#admit(url, address, offered, null, (identity) => ({
      protocol: selectedProtocol(offered, false),
      identity,
    }));
  }

  /**
   * Answers `GET /auth`: whether auth is on and, if so, whether the
   * `Authorization: Bearer` token would open a socket (to `?room=` when
   * given), with the same refusal an upgrade would get. A check, so it is
   * neither counted nor logged as a refusal.
   */
  authCheck(req: Request, url: URL): Response | Promise<Response> {
    if (!originAllowed(req, this.#opts.allowOrigin)) {
      return refusal(403, "origin not allowed");
    }
    const room = url.searchParams.get("room");
    if (room !== null && !isRoomName(room)) return refusal(400, ROOM_RULE);
    const auth = this.#opts.auth;
    if (!auth) return noStoreJson({ auth: false });
    const header = req.headers.get("authorization") ?? "";
    const token = /^Bearer +(\S+)\s*$/i.exec(header)?.[1] ?? null;
    return auth.verify(token).then((verdict) => {
      const checked = withRoom(verdict, room);
      if (isAuthFailure(checked)) return authRefusal(checked);
      return noStoreJson({
        auth: true,
        name: checked.name,
        exp: checked.expires === null ? null : checked.expires / 1000,
      });
    });
  }

  /**
   * Auth, when on, then the instance's state and caps; `admit` builds the
   * admission. Without auth nothing here awaits, so an auth-less server
   * upgrades in the same turn as before.
   */
  #admit<T>(
    url: URL,
    address: string | null,
    offered: string[],
    room: string | null,
    admit: (identity: Identity | null) => T,
  ): Admitted<T> {
    const auth = this.#opts.auth;
    if (!auth) return this.#capacity(address) ?? admit(null);
    const token = url.searchParams.get("token") ?? bearerToken(offered);
    return auth.verify(token).then((verdict) => {
      const checked = withRoom(verdict, room);
      if (isAuthFailure(checked)) return this.#refuse(checked, url, room);
      return this.#capacity(address) ?? admit(checked);
    });
  }

  /** Counts and logs a refusal by auth (never the token) and answers it. */
  #refuse(failure: AuthFailure, url: URL, room: string | null): Response {
    this.#opts.metrics.authFailed(failure.reason);
    this.#opts.logger.log("warn", "auth refused", {
      reason: failure.reason,
      status: failure.status,
      path: url.pathname,
      ...(room === null ? {} : { room }),
    });
    return authRefusal(failure);
  }

  /**
   * Shutdown, the connection caps (total and per address) and load
   * shedding: checked last, just before upgrading.
   */
  #capacity(address: string | null): Response | null {
    const opts = this.#opts;
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

/** The refusal for a token, with the challenge HTTP asks of a 401. */
function authRefusal(failure: AuthFailure): Response {
  const res = refusal(failure.status, failure.message);
  if (failure.status === 401) res.headers.set("www-authenticate", "Bearer");
  return res;
}

/** A JSON answer that no cache keeps: it depends on the caller's token. */
function noStoreJson(body: unknown): Response {
  return Response.json(body, { headers: { "cache-control": "no-store" } });
}

/** The verdict, refused when the identity's `rooms` claim excludes `room`. */
function withRoom(
  verdict: Identity | AuthFailure,
  room: string | null,
): Identity | AuthFailure {
  if (isAuthFailure(verdict) || room === null) return verdict;
  return roomAllowed(verdict.rooms, room) ? verdict : ROOM_REFUSED;
}

/** The token of the first `bearer.<JWT>` entry offered, or null. */
function bearerToken(offered: string[]): string | null {
  const entry = offered.find((p) => p.startsWith(BEARER_PREFIX));
  return entry === undefined ? null : entry.slice(BEARER_PREFIX.length);
}

/**
 * The subprotocol the handshake selects: `hubbub.v1` when the chat client
 * speaks JSON, else the token-free {@link BEARER_PROTOCOL} when offered, else
 * none. A `bearer.<JWT>` entry is never selected: that would echo the token.
 */
function selectedProtocol(offered: string[], json: boolean): string | null {
  if (json) return JSON_SUBPROTOCOL;
  return offered.includes(BEARER_PROTOCOL) ? BEARER_PROTOCOL : null;
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
