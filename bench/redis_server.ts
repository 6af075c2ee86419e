/**
 * A throwaway `redis-server` on loopback without persistence, started for the
 * `--redis` bench and for the scale-out tests (`tests/redis_helpers.ts`).
 *
 * @module
 */

/** A running `redis-server` child. */
export interface RedisChild {
  /** The port it listens on at 127.0.0.1. */
  readonly port: number;
  /** `redis://127.0.0.1:PORT`, for `--redis`. */
  readonly url: string;
  /** Its process id, for CPU samples. */
  readonly pid: number;
  /** Stops it (SIGTERM, or `signal`) and waits for its exit. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Bounds a wait, e.g. with a timeout; `what` names it in the error. */
export type Wait = <T>(promise: Promise<T>, what: string) => Promise<T>;

/**
 * Starts `command` (`redis-server` on the PATH by default) on `port` (a
 * free loopback port by default) with `extra` arguments (e.g.
 * `--requirepass`), drains its output so that it never blocks on a full
 * pipe, and resolves once it accepts connections. Every wait goes through
 * `wait` (unbounded by default).
 */
export async function spawnRedis(
  port: number = freePort(),
  { extra = [], command = "redis-server", wait = (p) => p }: {
    extra?: string[];
    command?: string;
    wait?: Wait;
  } = {},
): Promise<RedisChild> {
  const child = new Deno.Command(command, {
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
      await wait(status, "redis-server exit");
      await Promise.all([outDone, errDone]);
    })();
  try {
    await wait(ready.promise, `redis-server ready on ${port}: ${out}`);
  } catch (e) {
    await stop("SIGKILL");
    throw e;
  }
  return { port, url: `redis://127.0.0.1:${port}`, pid: child.pid, stop };
}

/** A port nothing listens on at 127.0.0.1 now, for redis-server to take. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
