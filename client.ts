/**
 * One connected chat socket: it reads frames, enforces the per-connection
 * limits (size, binary, rate), turns valid frames into hub calls, and cleans
 * up exactly once however the socket ends. Writing is the hub's job; the
 * client only owns the socket's lifecycle.
 *
 * @module
 */

import { HistoryUnavailable } from "./history.ts";
import type { Hub, Member, OwnLine, Room } from "./hub.ts";
import type { SocketTracking } from "./connections.ts";
import type { Logger } from "./log.ts";
import { InFlight } from "./inflight.ts";
import type { EvictionReason, Metrics } from "./metrics.ts";
import {
  exceedsBytes,
  normalizePlain,
  parseClientMessage,
} from "./protocol.ts";

/** The close reason Deno's built-in idle timeout uses after a missing pong. */
const IDLE_CLOSE_REASON = "No response from ping frame.";

/** Per-connection limits. */
export interface ClientLimits {
  /** Largest incoming message, UTF-8 bytes. */
  maxMessageBytes: number;
  /** Messages per second; 0 is unlimited. */
  rateLimit: number;
  /** Token bucket size. */
  rateBurst: number;
}

/** Where a new client goes, from its handshake's query. */
export interface JoinRequest {
  /** Room to join. */
  room: string;
  /** Wanted display name (may get a suffix in the room). */
  name: string;
  /** The token's `sub` when auth is on; its sockets are one person. */
  user?: string;
  /** Last seq the client saw, for reconnects. */
  since?: number;
  /** The room epoch that `since` belongs to. */
  epoch?: string;
}

/** What a client needs from the instance that accepted it. */
export interface ClientContext {
  /** Holds the socket and lets it go. */
  tracking: SocketTracking;
  /** The hub the client joins. */
  hub: Hub;
  /** Counters for timeouts and rate limiting. */
  metrics: Metrics;
  /** Where timeouts are reported. */
  logger: Logger;
  /** Limits every frame is checked against. */
  limits: ClientLimits;
  /** Checks a fresh token the client sent; answers with an error if bad. */
  refreshToken(client: Client, token: string): void;
}

/**
 * Frames a client may send before it is in its room (the join waits for
 * the relay); more is a flood, not a person typing.
 */
const EARLY_FRAMES = 64;

let nextId = 1;

/** A chat connection: a hub {@link Member} bound to a socket's events. */
export class Client implements Member {
  readonly id = nextId++;
  readonly socket: WebSocket;
  readonly json: boolean;
  readonly user: string | undefined;
  name: string;
  room: Room | null = null;
  outbox: OwnLine[] | null = null;
  cursor = 0;
  readonly inFlight: InFlight = new InFlight();

  readonly #ctx: ClientContext;
  /** Where to join once the socket opens. */
  readonly #join: JoinRequest;
  #tokens: number;
  #refilledAt = 0;
  /** Messages refused since the last accepted one. */
  #refused = 0;
  /**
   * Frames that arrived while the hub was still joining this client (with
   * `--redis` a room may first have to be loaded); null once joined.
   */
  #early: unknown[] | null = [];

  /** Binds to `socket` and joins the hub once the socket opens. */
  constructor(
    socket: WebSocket,
    json: boolean,
    join: JoinRequest,
    ctx: ClientContext,
  ) {
    this.socket = socket;
    this.json = json;
    this.name = join.name;
    this.user = join.user;
    this.#join = join;
    this.#ctx = ctx;
    this.#tokens = ctx.limits.rateBurst;
    // The client itself is the listener (handleEvent): one object for all
    // events instead of a closure per event type, which matters at 10k
    // sockets. Error events need no listener: Deno follows each with close.
    socket.addEventListener("open", this);
    socket.addEventListener("message", this);
    socket.addEventListener("close", this);
  }

  /** EventListener entry point for the socket's open, message and close. */
  handleEvent(ev: Event): void {
    switch (ev.type) {
      case "message":
        this.#onMessage((ev as MessageEvent).data);
        return;
      case "open": {
        const { hub } = this.#ctx;
        // Upgraded just before a shutdown began: nothing will be sent to it.
        if (hub.stopped) {
          this.socket.close(1001, "server shutting down");
          return;
        }
        const { room, since, epoch } = this.#join;
        try {
          hub.join(this, room, since, epoch);
        } catch (err) {
          // The room's stored state cannot be read (a disk error, logged by
          // the store): joining would restart its numbering.
          if (!(err instanceof HistoryUnavailable)) throw err;
          hub.leave(this);
          this.socket.close(1011, "room history unavailable");
        }
        return;
      }
      case "close": {
        const { code, reason } = ev as CloseEvent;
        this.#onClose(code, reason);
        return;
      }
    }
  }

  /** Whether the hub may still take this client in (see {@link Member.live}). */
  get live(): boolean {
    return this.socket.readyState === WebSocket.OPEN &&
      !this.#ctx.tracking.departing(this.socket);
  }

  /** Called by the hub after it removed this client against its will. */
  evicted(reason: EvictionReason, code: number, text: string): void {
    // Evicted while still being admitted: nothing early is replayed, and
    // what arrives from now on is discarded.
    this.#early = null;
    // The hub no longer knows this client and queues nothing more for it;
    // until Deno reports the close, what stays pinned is this small object
    // and the socket's queue, bounded by --max-buffered-bytes (counting
    // Deno's per-frame overhead) plus one visit's frames (closing.ts).
    this.#ctx.tracking.evictSocket(
      this.socket,
      reason,
      code,
      text,
      this.id,
      this.inFlight,
    );
  }

  /** Called by the hub once this client is in its room. */
  joined(): void {
    const early = this.#early;
    this.#early = null;
    for (const data of early ?? []) this.#onMessage(data);
  }

  #onMessage(data: unknown): void {
    if (!this.room) {
      if (this.#early === null) {
        // Evicted or closed by us: the socket stays open until its queue
        // drains (closing.ts); what it sends meanwhile is dropped.
        this.#ctx.tracking.discard(this.socket);
      } else if (this.#early.length >= EARLY_FRAMES) {
        this.#closeNow(1008, "too many messages before joining");
      } else {
        // Still being admitted (the join may wait for the relay).
        this.#early.push(data);
      }
      return;
    }
    const { hub, limits } = this.#ctx;
    if (typeof data !== "string") {
      this.#closeNow(1003, "binary frames are not accepted");
      return;
    }
    if (exceedsBytes(data, limits.maxMessageBytes)) {
      this.#closeNow(1009, "message too big");
      return;
    }
    // Every frame costs a token, not only chat messages: nick changes go to
    // the whole room, and each bad frame is answered.
    if (!this.#allow()) return;
    if (!this.json) {
      const text = normalizePlain(data);
      if (text !== "") hub.publish(this, text);
      return;
    }
    const msg = parseClientMessage(data);
    switch (msg.type) {
      case "error":
        hub.sendError(this, msg.code, msg.message);
        return;
      case "message":
        hub.publish(this, msg.text);
        return;
      case "nick":
        if (this.user === undefined) {
          hub.rename(this, msg.name);
        } else {
          hub.sendError(this, "auth_name", "your name comes from your token");
        }
        return;
      case "token":
        this.#ctx.refreshToken(this, msg.token);
        return;
      case "who":
        hub.who(this);
        return;
      case "history":
        hub.scrollback(this, msg.before, msg.limit);
        return;
    }
  }

  /**
   * Token bucket. The first refused frame is answered with an error; a
   * client that goes on flooding past another burst is closed with 1008.
   */
  #allow(): boolean {
    const { rateLimit, rateBurst } = this.#ctx.limits;
    if (rateLimit === 0) return true;
    const now = performance.now();
    this.#tokens = Math.min(
      rateBurst,
      this.#tokens + (now - this.#refilledAt) * rateLimit / 1000,
    );
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      this.#refused = 0;
      return true;
    }
    const { hub, metrics } = this.#ctx;
    metrics.rateLimited++;
    this.#refused++;
    if (this.#refused === 1) {
      hub.sendError(
        this,
        "rate_limited",
        `slow down: at most ${rateLimit} messages/s; messages are being dropped`,
      );
    } else if (this.#refused > rateBurst) {
      hub.evict(this, "rate_limit", 1008, "rate limit exceeded");
    }
    return false;
  }

  /** Called by the hub (or its relay) once it let this client go. */
  close(code: number, text: string): void {
    this.#early = null;
    this.#ctx.tracking.closeSocket(this.socket, code, text, this.inFlight);
  }

  /** Leaves the hub and closes; for protocol violations by the peer. */
  #closeNow(code: number, reason: string): void {
    this.#ctx.hub.leave(this);
    this.close(code, reason);
  }

  /**
   * Deno may dispatch close more than once: every step is idempotent, and
   * the timeout is counted only while the client is still in a room.
   */
  #onClose(code: number, reason: string): void {
    const { hub, metrics, logger } = this.#ctx;
    this.#ctx.tracking.untrack(this.socket, code);
    if (code === 1001 && reason === IDLE_CLOSE_REASON && this.room) {
      metrics.evicted("idle_timeout");
      logger.log("info", "client timed out", { client: this.id });
    }
    hub.leave(this);
  }
}
