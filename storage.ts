/**
 * Where an instance keeps its rooms' history, and whether it shares its
 * rooms with other instances: in memory, in a `--data` file, or in Redis,
 * which then also relays every message.
 *
 * @module
 */

import { DurableHistory } from "./durable_history.ts";
import { type HistoryStore, MemoryHistory } from "./history.ts";
import type { DataSync } from "./history_db.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { RedisBus } from "./redis_bus.ts";

/** The settings that choose the storage; each has the command line's default. */
export interface StorageOptions {
  /** Messages kept per room in memory (sent on join); default 100. */
  history?: number;
  /**
   * Database file for durable history (created if absent); default none:
   * history in memory only. Needs read and write permission for the file
   * and its `-wal` and `-journal` siblings. Not with `redis`.
   */
  data?: string;
  /**
   * Messages kept per room on disk with `data`, or in Redis (approximately)
   * with `redis`; default 10000.
   */
  historyMax?: number;
  /** Commit durability with `data`; default `normal`. */
  dataSync?: DataSync;
  /**
   * `redis://` or `rediss://` URL: several instances share rooms through
   * this Redis; default none (this process is the whole chat).
   */
  redis?: string;
  /**
   * Seconds this instance's members stay listed on other instances without
   * renewal (renewed every third of it); default 15.
   */
  redisPresenceTtl?: number;
}

/** An instance's history store, and the Redis bus when rooms are shared. */
export interface Storage {
  /** Where the hub keeps and reads history. */
  history: HistoryStore;
  /** With `redis`: the relay through Redis; null when this process is the whole chat. */
  bus: RedisBus | null;
}

/**
 * Opens the storage `options` ask for. With Redis a message counts as
 * received in `metrics` once Redis has accepted it, not when it arrives.
 *
 * @throws {TypeError} when both `redis` and `data` are set.
 * @throws {DataFileError} when `data` names a file that cannot be used.
 */
export function openStorage(
  options: StorageOptions,
  logger: Logger,
  metrics: Metrics,
): Storage {
  if (options.redis && options.data) {
    // With Redis, history lives in Redis; a file here would be a second,
    // diverging copy of it.
    throw new TypeError("redis and data cannot be used together");
  }
  const window = options.history ?? 100;
  const max = options.historyMax ?? 10000;
  const bus = options.redis
    ? new RedisBus({
      url: options.redis,
      history: window,
      historyMax: max,
      presenceTtlMs: (options.redisPresenceTtl ?? 15) * 1000,
      logger,
      accepted: () => metrics.messagesReceived++,
    })
    : null;
  const history: HistoryStore = bus?.window ??
    (options.data
      ? new DurableHistory({
        path: options.data,
        window,
        max,
        sync: options.dataSync ?? "normal",
        logger,
        metrics,
      })
      : new MemoryHistory(window));
  return { history, bus };
}
