/**
 * The process-wide guard that sheds load before memory runs out: new sockets
 * are refused (503) while the sockets the server gave up on pin more than
 * `--max-evicted-bytes`, or while the process's resident memory is over
 * `--max-memory`. Refusing upgrades is all a server can do here: Deno gives
 * no way to abort a socket it already holds (denoland/deno#27924). One log
 * line says when shedding starts and why, and one when it stops.
 *
 * @module
 */

import type { Logger } from "./log.ts";

/**
 * How long a reading of the process's memory is reused: an upgrade storm
 * must not become a storm of /proc reads.
 */
const MEMORY_READ_MS = 250;

/** What the guard watches and its limits. */
export interface GuardOptions {
  /** Bytes all evicted-but-unreleased sockets may pin; 0 turns it off. */
  maxEvictedBytes: number;
  /** What they pin now. */
  evictedBytes(): number;
  /** Resident memory of the process beyond which upgrades stop; 0 = off. */
  maxMemory: number;
  /** Where the start and end of shedding are logged. */
  logger: Logger;
}

/** Decides whether the process can take one more socket. */
export class LoadGuard {
  readonly #opts: GuardOptions;
  #rss = 0;
  #rssReadAt = -Infinity;
  /** The reason shedding is on, as last logged; null when it is off. */
  #shedding: string | null = null;

  /** A guard with `opts`. */
  constructor(opts: GuardOptions) {
    this.#opts = opts;
  }

  /** Why a new socket must be refused now, or null when it may open. */
  refusal(): string | null {
    const reason = this.#reason();
    if (reason !== this.#shedding) {
      if (reason === null) {
        this.#opts.logger.log("info", "load shedding ended", {});
      } else {
        this.#opts.logger.log("warn", "shedding load: upgrades get 503", {
          reason,
          evictedBytes: this.#opts.evictedBytes(),
          maxEvictedBytes: this.#opts.maxEvictedBytes,
          rss: Deno.memoryUsage().rss,
          maxMemory: this.#opts.maxMemory,
        });
      }
      this.#shedding = reason;
    }
    return reason;
  }

  #reason(): string | null {
    const { maxEvictedBytes, maxMemory } = this.#opts;
    if (maxEvictedBytes > 0) {
      const pinned = this.#opts.evictedBytes();
      if (pinned > maxEvictedBytes) {
        return "evicted sockets not yet released hold more than --max-evicted-bytes";
      }
    }
    if (maxMemory > 0 && this.#memory() > maxMemory) {
      return "server memory is over --max-memory";
    }
    return null;
  }

  #memory(): number {
    const now = performance.now();
    if (now - this.#rssReadAt > MEMORY_READ_MS) {
      this.#rss = Deno.memoryUsage().rss;
      this.#rssReadAt = now;
    }
    return this.#rss;
  }
}
