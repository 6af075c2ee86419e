/**
 * The sockets an instance holds, chat and echo, from the upgrade until Deno
 * releases them: the connection caps, `/healthz`, `/metrics` and shutdown
 * all count the same set.
 *
 * @module
 */

import { AddressCounts } from "./addresses.ts";
import { ClosingSockets } from "./closing.ts";
import type { InFlight } from "./inflight.ts";
import type { Logger } from "./log.ts";
import type { EvictionReason, Metrics } from "./metrics.ts";

/**
 * How a socket (chat or echo) reports its end to the instance that owns it,
 * and hands over the sockets the server gives up on.
 */
export interface SocketTracking {
  /** Called when the socket has closed, with its close code. */
  untrack(socket: WebSocket, code: number): void;
  /** Counts, logs and closes a socket the server gave up on. */
  evictSocket(
    socket: WebSocket,
    reason: EvictionReason,
    code: number,
    text: string,
    client: number | undefined,
    inFlight: InFlight,
  ): void;
  /** Closes a socket the server is done with, once that is safe. */
  closeSocket(
    socket: WebSocket,
    code: number,
    text: string,
    inFlight?: InFlight,
  ): void;
  /** Takes note of a frame from a socket being let go, and drops it. */
  discard(socket: WebSocket): void;
  /** Whether `socket` is being let go (closed once its queue drains). */
  departing(socket: WebSocket): boolean;
}

const GOING_AWAY = 1001;
const ABNORMAL_CLOSURE = 1006;

/** What {@link Connections} reports to and through. */
export interface ConnectionsOptions {
  /** Counts closes, evictions and discarded frames. */
  metrics: Metrics;
  /** Where evictions and sockets left open at shutdown are reported. */
  logger: Logger;
  /**
   * Called once as each socket is released, for state others keep per
   * socket (token lifetimes).
   */
  released(socket: WebSocket): void;
}

/**
 * Every held socket, the ones among them being let go, and how many each
 * client address holds. One owner for all three because a socket enters
 * and leaves them together: a socket being let go still counts against the
 * caps until Deno releases it (denoland/deno#27924), yet is no longer
 * served.
 */
export class Connections implements SocketTracking {
  readonly #sockets = new Set<WebSocket>();
  /** Sockets the server gave up on, until Deno releases them. */
  readonly #departing = new ClosingSockets();
  /** Sockets held per client address, evicted ones included. */
  readonly #addresses = new AddressCounts();
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #released: (socket: WebSocket) => void;

  /** An empty set that reports through `options`. */
  constructor(options: ConnectionsOptions) {
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#released = options.released;
  }

  /** Holds a freshly upgraded socket, counted against `address`. */
  hold(socket: WebSocket, address: string | null): void {
    this.#sockets.add(socket);
    this.#addresses.add(socket, address);
  }

  /** Sockets held, those being let go included: what the caps count. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Sockets being served: held, less those being let go. */
  get served(): number {
    return this.#sockets.size - this.#departing.size;
  }

  /** Sockets given up on that Deno has not released yet. */
  get unreleased(): number {
    return this.#departing.size;
  }

  /** Memory the queues of sockets being let go hold, in bytes. */
  pinnedBytes(): number {
    return this.#departing.pinnedBytes();
  }

  /** Sockets `address` holds now, for `--max-connections-per-ip`. */
  heldBy(address: string): number {
    return this.#addresses.count(address);
  }

  /** Forgets a closed socket; idempotent, as Deno may dispatch close twice. */
  untrack(socket: WebSocket, code: number): void {
    if (!this.#sockets.delete(socket)) return;
    this.#departing.released(socket);
    this.#addresses.remove(socket);
    this.#released(socket);
    // Deno reports a connection that ended without a close frame (a TCP
    // drop) as code 0; RFC 6455 and every client call that 1006.
    this.#metrics.closed(code === 0 ? ABNORMAL_CLOSURE : code);
  }

  /**
   * Closes a socket the server is done with (a protocol violation, an
   * expired token, a refusal by the relay), once that is safe (closing.ts).
   */
  closeSocket(
    socket: WebSocket,
    code: number,
    text: string,
    inFlight: InFlight | null = null,
  ): void {
    this.#departing.close(socket, code, text, inFlight);
  }

  /** The one way chat and echo sockets are evicted: counted, logged, closed. */
  evictSocket(
    socket: WebSocket,
    reason: EvictionReason,
    code: number,
    text: string,
    client: number | undefined,
    inFlight: InFlight,
  ): void {
    this.#metrics.evicted(reason);
    const buffered = socket.bufferedAmount;
    this.#logger.log("warn", "client evicted", {
      reason,
      code,
      buffered,
      pinned: inFlight.pinned(buffered),
      ...(client === undefined ? {} : { client }),
    });
    this.closeSocket(socket, code, text, inFlight);
  }

  /** A frame from a socket being let go: dropped unread, but noted. */
  discard(socket: WebSocket): void {
    this.#metrics.evictedFramesDiscarded++;
    this.#departing.input(socket);
  }

  /** Whether `socket` is being let go; asked for every frame received. */
  departing(socket: WebSocket): boolean {
    return this.#departing.has(socket);
  }

  /**
   * Closes every open socket with 1001 "server shutting down", those being
   * let go included: at shutdown nobody waits for their queues to drain.
   */
  closeAll(): void {
    for (const socket of [...this.#sockets]) {
      if (socket.readyState === WebSocket.OPEN) {
        socket.close(GOING_AWAY, "server shutting down");
      }
    }
  }

  /** Stops watching sockets being let go; later ones are closed at once. */
  stop(): void {
    this.#departing.stop();
  }

  /**
   * Resolves once Deno has released every socket, or after `timeoutMs`,
   * logging how many are still open then.
   */
  async allReleased(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (this.#sockets.size > 0) {
      this.#logger.log("warn", "sockets still open at shutdown", {
        open: this.#sockets.size,
      });
    }
  }
}
