/**
 * Sockets the server gave up on (evicted, or closed for something the peer
 * did), from that decision until Deno has really let them go.
 *
 * Deno cannot abort a server-side WebSocket (denoland/deno#27924). A close
 * frame queued behind data the peer does not read never goes out, and if
 * the peer sends anything meanwhile Deno dispatches `close` (code 0) and
 * forgets the socket while its queued writes, file descriptor and memory
 * stay: a ghost no counter sees. A peer that goes on flooding after the
 * close frame makes Deno drop the connection the same way, and the peer
 * sees 1006 instead of the close code.
 *
 * So the socket is not closed at once. It stays open, its input is
 * discarded, and `bufferedAmount` (readable only while the socket is open)
 * is watched: once it is empty and the peer has been quiet for
 * {@link QUIET_MS} (or {@link LINGER_MS} after the decision), the close
 * frame goes out with nothing in front of it, so it reaches the peer and
 * the close handshake completes. A peer that never reads stays open and
 * counted, with what it pins (see inflight.ts) in {@link pinnedBytes},
 * until it disconnects: then its queued writes fail and Deno releases it
 * and reports the close.
 *
 * @module
 */

import type { InFlight } from "./inflight.ts";
import { PolledMap } from "./polled_map.ts";

/** How often held sockets are looked at. */
export const POLL_MS = 100;

/**
 * A peer that has sent nothing for this long has stopped sending: a close
 * frame now will not cross data of its own.
 */
export const QUIET_MS = 200;

/**
 * After this long the close frame goes out as soon as nothing is queued in
 * front of it, quiet peer or not: a peer that floods forever must not keep a
 * socket open forever.
 */
export const LINGER_MS = 2000;

/** One socket being let go. */
interface Held {
  code: number;
  reason: string;
  /** Its queue, when the owner tracked one; payload alone otherwise. */
  inFlight: InFlight | null;
  /** When the server gave up on it (performance.now()). */
  since: number;
  /** When its peer last sent a frame. */
  lastInput: number;
  /** Whether `close()` was called (the queue was empty). */
  closeSent: boolean;
  /** Memory its queue held when last looked at. */
  pinned: number;
}

/** The sockets being let go, for the connection cap and the metrics. */
export class ClosingSockets {
  readonly #held = new PolledMap<WebSocket, Held>(POLL_MS, () => this.#poll());
  /** Sum of the held sockets' `pinned`, kept as they change. */
  #pinned = 0;
  /** Set by {@link stop}: a socket given up on after it is closed at once. */
  #stopped = false;

  /** Sockets given up on and not yet released. */
  get size(): number {
    return this.#held.size;
  }

  /**
   * Memory their queues held when last looked at, in bytes; read at every
   * upgrade (the load guard), so kept as a running total.
   */
  pinnedBytes(): number {
    return this.#pinned;
  }

  /** Whether `socket` is being let go (its input is to be discarded). */
  has(socket: WebSocket): boolean {
    return this.#held.has(socket);
  }

  /**
   * Closes `socket` with `code` once nothing is queued in front of the close
   * frame and its peer is quiet; until {@link released}, it is counted here.
   */
  close(
    socket: WebSocket,
    code: number,
    reason: string,
    inFlight: InFlight | null = null,
  ): void {
    if (this.#held.has(socket) || socket.readyState !== WebSocket.OPEN) return;
    if (this.#stopped) {
      // Shutting down: every socket is being closed anyway.
      socket.close(code, reason);
      return;
    }
    const now = performance.now();
    const held: Held = {
      code,
      reason,
      inFlight,
      since: now,
      lastInput: now,
      closeSent: false,
      pinned: 0,
    };
    this.#held.set(socket, held);
    this.#look(socket, held, now);
  }

  /** Notes a frame from a socket being let go (it is discarded). */
  input(socket: WebSocket): void {
    const held = this.#held.get(socket);
    if (held) held.lastInput = performance.now();
  }

  /** Deno reported the socket closed: it no longer holds anything. */
  released(socket: WebSocket): void {
    const held = this.#held.get(socket);
    if (held) this.#pin(held, 0);
    this.#held.delete(socket);
  }

  /** Stops watching (the instance is shutting down). */
  stop(): void {
    this.#stopped = true;
    this.#held.stop();
  }

  #poll(): void {
    const now = performance.now();
    for (const [socket, held] of this.#held) this.#look(socket, held, now);
  }

  #look(socket: WebSocket, held: Held, now: number): void {
    // Closed or closing: Deno reports the end with a close event, which
    // comes only once its writes are done or have failed.
    if (held.closeSent || socket.readyState !== WebSocket.OPEN) return;
    const buffered = socket.bufferedAmount;
    this.#pin(
      held,
      held.inFlight ? held.inFlight.pinned(buffered) : buffered,
    );
    if (buffered > 0) return;
    const quiet = now - held.lastInput >= QUIET_MS;
    if (!quiet && now - held.since < LINGER_MS) return;
    held.closeSent = true;
    this.#pin(held, 0);
    socket.close(held.code, held.reason);
  }

  /** Sets what a held socket's queue holds, and the total with it. */
  #pin(held: Held, bytes: number): void {
    this.#pinned += bytes - held.pinned;
    held.pinned = bytes;
  }
}
