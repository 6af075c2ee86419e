/**
 * A throwaway `redis-server` for the scale-out tests: loopback, a free port,
 * no persistence (so a restart loses everything, as the outage test wants),
 * stopped by its PID.
 *
 * @module
 */

import { freePort, within } from "./helpers.ts";

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
  port = freePort(),
  extra: string[] = [],
): Promise<RedisServer> {
  let current = await spawnRedis(port, extra);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: (signal) => current.stop(signal),
    async restart() {
      await current.stop();
      current = await spawnRedis(port, extra);
    },
  };
}

async function spawnRedis(
  port: number,
  extra: string[],
): Promise<{ stop(signal?: Deno.Signal): Promise<void> }> {
  const child = new Deno.Command(REDIS_SERVER, {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      ...extra,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const ready = Promise.withResolvers<void>();
  const outDone = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(chunk) {
        out += chunk;
        if (out.includes("Ready to accept connections")) ready.resolve();
      },
    }),
  );
  const errDone = child.stderr.pipeTo(new WritableStream());
  const status = child.status;
  status.then((s) => ready.reject(new Error(`redis-server exited ${s.code}`)));
  let stopped: Promise<void> | null = null;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch (e) {
        if (!(e instanceof TypeError)) throw e; // already exited
      }
      await within(status, "redis-server exit");
      await Promise.all([outDone, errDone]);
    })();
  try {
    await within(ready.promise, `redis-server ready on ${port}: ${out}`);
  } catch (e) {
    await stop("SIGKILL");
    throw e;
  }
  return { stop };
}
