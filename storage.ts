/**
 * Where an instance keeps its rooms' history, and whether it shares its
 * rooms with other instances: in memory, in a `--data` file, or in Redis,
 * which then also relays every message.
 *
 * @module
 */

import { DurableHistory } from "./durable_history.ts";
import { type HistoryStore, MemoryHistory } from "./history.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { HubbubOptions } from "./mod.ts";
import { RedisBus } from "./redis_bus.ts";

/** The options that choose the storage, with the command line's defaults. */
export type StorageOptions = Pick<
  HubbubOptions,
  "history" | "data" | "historyMax" | "dataSync" | "redis" | "redisPresenceTtl"
>;

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
  const bus = options.redis
    ? new RedisBus({
      url: options.redis,
      history: options.history ?? 100,
      historyMax: options.historyMax ?? 10000,
      presenceTtlMs: (options.redisPresenceTtl ?? 15) * 1000,
      logger,
      accepted: () => metrics.messagesReceived++,
    })
    : null;
  const history: HistoryStore = bus?.window ??
    (options.data
      ? new DurableHistory({
        path: options.data,
        window: options.history ?? 100,
        max: options.historyMax ?? 10000,
        sync: options.dataSync ?? "normal",
        logger,
        metrics,
      })
      : new MemoryHistory(options.history ?? 100));
  return { history, bus };
}
