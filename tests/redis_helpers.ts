/**
 * A throwaway `redis-server` for the scale-out tests: loopback, a free port,
 * no persistence (so a restart loses everything, as the outage test wants),
 * spawned and stopped (`child.kill`) by `bench/redis_server.ts`.
 *
 * @module
 */

import { spawnRedis } from "../bench/redis_server.ts";
import { within } from "./helpers.ts";

/** Where Debian's package puts the server. */
const REDIS_SERVER = "/usr/bin/redis-server";

/** Why the Redis tests cannot run here, or null when they can. */
export function redisMissing(): string | null {
  try {
    Deno.statSync(REDIS_SERVER);
    return null;
  } catch {
    return `${REDIS_SERVER} not found (Debian package redis-server)`;
  }
}

/** A running `redis-server` child. */
export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** Stops it (SIGTERM, or `signal`) and waits for its exit. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Starts it again on the same port after {@link stop} (empty: no persistence). */
  restart(): Promise<void>;
}

/**
 * Starts `redis-server` on `port` (a free one by default) with `extra`
 * arguments (e.g. `--requirepass`) and waits until it is ready.
 */
export async function startRedis(
  port?: number,
  extra: string[] = [],
): Promise<RedisServer> {
  let current = await start(port, extra);
  return {
    port: current.port,
    url: current.url,
    stop: (signal) => current.stop(signal),
    async restart() {
      await current.stop();
      current = await start(current.port, extra);
    },
  };
}

function start(port: number | undefined, extra: string[]) {
  return spawnRedis(port, { extra, command: REDIS_SERVER, wait: within });
}
