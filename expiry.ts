/**
 * The lifetime of a token on an open socket: a socket whose token runs out
 * while it is connected is closed (1008 "token expired") unless a fresh
 * token it sent moved its deadline first.
 *
 * One interval sweeps every tracked socket, running only while some socket
 * has a deadline (polled_map.ts), rather than a timer per socket.
 *
 * @module
 */

import { type Auth, checkRefresh, type Identity } from "./auth.ts";
import type { Logger } from "./log.ts";
import { PolledMap } from "./polled_map.ts";

/**
 * How often deadlines are checked. A socket outlives its token by at most
 * this long; a sweep is one comparison per tracked socket.
 */
export const SWEEP_MS = 1000;

const POLICY_VIOLATION = 1008;

/** A socket's deadline and what to do when it passes. */
interface Deadline {
  /** Milliseconds since the epoch. */
  at: number;
  /** Takes the socket out of the hub, if it is in one, before the close. */
  leave: (() => void) | undefined;
}

/** Closes a socket the server is done with. */
export type CloseSocket = (
  socket: WebSocket,
  code: number,
  reason: string,
) => void;

/** What a refresh needs to know of the socket that sent it. */
export interface Refreshing {
  /** The socket whose deadline moves. */
  readonly socket: WebSocket;
  /** The `sub` it was admitted with; undefined when auth is off. */
  readonly user: string | undefined;
  /** The room it is in now, or null. */
  roomName(): string | null;
  /** Tells the client why its token was refused. */
  refuse(message: string): void;
}

/** Owns the deadlines of every socket with an expiring token. */
export class TokenLifetimes {
  readonly #auth: Auth | null;
  readonly #logger: Logger;
  readonly #close: CloseSocket;
  readonly #deadlines = new PolledMap<WebSocket, Deadline>(
    SWEEP_MS,
    () => this.#sweep(),
  );
  /** Each socket's refreshes, judged one after another: the last sent wins. */
  readonly #refreshes = new WeakMap<WebSocket, Promise<void>>();

  /**
   * Lifetimes of tokens verified by `auth` (null: auth is off); an expired
   * socket is closed through `close` (the instance's, which waits until
   * nothing is queued in front of the close frame; see closing.ts).
   */
  constructor(
    auth: Auth | null,
    logger: Logger,
    close: CloseSocket = (socket, code, reason) => socket.close(code, reason),
  ) {
    this.#auth = auth;
    this.#logger = logger;
    this.#close = close;
  }

  /**
   * Starts the clock of a socket admitted with `identity`: at its expiry
   * `leave` runs and the socket is closed with 1008 "token expired". No
   * identity, or a token without `exp`: nothing to watch.
   */
  watch(
    socket: WebSocket,
    identity: Identity | null,
    leave?: () => void,
  ): void {
    if (identity?.expires == null) return;
    this.#deadlines.set(socket, { at: identity.expires, leave });
  }

  /**
   * Judges a fresh token sent on a connected socket: when it is valid, for
   * the same user and the current room, its expiry replaces the old one;
   * otherwise the client is told why and the old expiry stands.
   */
  refresh(client: Refreshing, token: string): void {
    const previous = this.#refreshes.get(client.socket) ?? Promise.resolve();
    const next = previous.then(async () => {
      const verdict = await checkRefresh(
        this.#auth,
        token,
        client.user,
        client.roomName(),
      );
      if (typeof verdict === "string") {
        client.refuse(verdict);
        return;
      }
      const deadline = this.#deadlines.get(client.socket);
      if (!deadline) return; // closed meanwhile, or never expiring
      if (verdict.expires === null) this.forget(client.socket);
      else deadline.at = verdict.expires;
    }).catch((err) => {
      this.#logger.log("error", "token refresh failed", {
        error: String(err),
      });
    });
    this.#refreshes.set(client.socket, next);
  }

  /** Stops watching a socket (it closed). Idempotent. */
  forget(socket: WebSocket): void {
    this.#deadlines.delete(socket);
  }

  /** Forgets every socket; for shutdown. */
  stop(): void {
    this.#deadlines.clear();
  }

  #sweep(): void {
    const now = Date.now();
    for (const [socket, deadline] of this.#deadlines) {
      if (deadline.at > now) continue;
      this.#deadlines.delete(socket);
      this.#logger.log("info", "token expired");
      deadline.leave?.();
      this.#close(socket, POLICY_VIOLATION, "token expired");
    }
  }
}
