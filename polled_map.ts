/**
 * A map whose entries one interval timer looks at, the timer running only
 * while the map holds something: an idle server keeps no timer, and the
 * code that adds and removes entries cannot forget to start or stop it.
 *
 * One timer for all entries rather than one each: a timer per socket costs
 * a timer object and a closure, kilobytes at ten thousand sockets, where an
 * entry in one map costs a few dozen bytes.
 *
 * @module
 */

/** A `Map` polled by one interval while it is not empty. */
export class PolledMap<K, V> {
  readonly #entries = new Map<K, V>();
  readonly #intervalMs: number;
  readonly #poll: () => void;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Set by {@link stop}: no timer may start after it. */
  #stopped = false;

  /**
   * An empty map; `poll` runs every `intervalMs` while it holds an entry.
   * `poll` may delete entries as it goes.
   */
  constructor(intervalMs: number, poll: () => void) {
    this.#intervalMs = intervalMs;
    this.#poll = poll;
  }

  /** How many entries it holds. */
  get size(): number {
    return this.#entries.size;
  }

  /** The value of `key`, if it has one. */
  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  /** Whether `key` has an entry. */
  has(key: K): boolean {
    return this.#entries.has(key);
  }

  /** Sets `key`'s entry and starts the timer if it was not running. */
  set(key: K, value: V): void {
    this.#entries.set(key, value);
    if (!this.#stopped) {
      this.#timer ??= setInterval(this.#poll, this.#intervalMs);
    }
  }

  /** Removes `key`'s entry, stopping the timer with the last; whether it had one. */
  delete(key: K): boolean {
    const had = this.#entries.delete(key);
    if (this.#entries.size === 0) this.#stopTimer();
    return had;
  }

  /** Removes every entry and stops the timer; a later {@link set} starts it. */
  clear(): void {
    this.#entries.clear();
    this.#stopTimer();
  }

  /**
   * Stops the timer for good (shutdown); the entries stay, to be read and
   * deleted, and entries set later are never polled.
   */
  stop(): void {
    this.#stopped = true;
    this.#stopTimer();
  }

  /** The entries, in insertion order; deleting while iterating is safe. */
  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.#entries[Symbol.iterator]();
  }

  #stopTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
