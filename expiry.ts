/**
 * Token expiry of open sockets: a socket whose token runs out while it is
 * connected is closed (1008 "token expired") unless a fresh token moved its
 * deadline first. One interval sweeps every tracked socket, running only
 * while some socket has a deadline: a timer per socket would cost a timer
 * object and a closure each, kilobytes at ten thousand sockets, where an
 * entry in one map costs a few dozen bytes.
 *
 * @module
 */

/**
 * How often deadlines are checked. A socket outlives its token by at most
 * this long; a sweep is one comparison per tracked socket.
 */
export const SWEEP_MS = 1000;

/** A socket's deadline and what to do when it passes. */
interface Deadline {
  /** Milliseconds since the epoch. */
  at: number;
  /** Closes the socket; called once, after it left the map. */
  expire: () => void;
}

/** Owns the deadlines of every socket with an expiring token. */
export class ExpirySweep {
  readonly #deadlines = new Map<WebSocket, Deadline>();
  #timer: ReturnType<typeof setInterval> | null = null;

  /** Calls `expire` once `at` (ms since the epoch) has passed. */
  track(socket: WebSocket, at: number, expire: () => void): void {
    this.#deadlines.set(socket, { at, expire });
    this.#timer ??= setInterval(this.#sweep, SWEEP_MS);
  }

  /**
   * Moves the deadline of a tracked socket (null: the new token never
   * expires). Returns false when the socket is no longer tracked.
   */
  renew(socket: WebSocket, at: number | null): boolean {
    const deadline = this.#deadlines.get(socket);
    if (!deadline) return false;
    if (at === null) this.forget(socket);
    else deadline.at = at;
    return true;
  }

  /** Stops tracking a socket (it closed). Idempotent. */
  forget(socket: WebSocket): void {
    if (this.#deadlines.delete(socket) && this.#deadlines.size === 0) {
      this.#stopTimer();
    }
  }

  /** Forgets every socket; for shutdown. */
  stop(): void {
    this.#deadlines.clear();
    this.#stopTimer();
  }

  #stopTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #sweep = (): void => {
    const now = Date.now();
    for (const [socket, deadline] of this.#deadlines) {
      if (deadline.at > now) continue;
      this.#deadlines.delete(socket);
      deadline.expire();
    }
    if (this.#deadlines.size === 0) this.#stopTimer();
  };
}
