/**
 * The hubbub server under measurement, started by the bench scripts as its
 * own `main.ts` process, as an operator would run it: on loopback, on a port
 * the system picks, with the permissions of `deno task start` narrowed to
 * one data directory.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The line `main.ts` prints on stdout once it accepts connections. */
const LISTENING = /listening on http:\/\/[^:]+:(\d+)\//;

/**
 * `main.ts` flags that lift the per-client rate limit and the connection
 * caps, so that a load run measures the server rather than its guards.
 */
export const NO_LIMITS: readonly string[] = [
  "--rate-limit=0",
  "--max-connections=100000",
  "--max-connections-per-ip=0",
];

/** How {@link startServer} starts the server. */
export interface ServerOptions {
  /** `main.ts` flags after the loopback ones, e.g. {@link NO_LIMITS}. */
  args?: readonly string[];
  /** The one directory it may read and write, for `--data`; none by default. */
  dataDir?: string | null;
  /** Variables added to the bench's environment, e.g. `HUBBUB_JWT_SECRET`. */
  env?: Record<string, string>;
  /** Where its log lines go: the bench's stderr, or nowhere (the default). */
  stderr?: "inherit" | "null";
}

/** A running `main.ts` process. */
export interface BenchServer {
  /** The port it listens on at 127.0.0.1. */
  readonly port: number;
  /** Its process id, for CPU and memory samples. */
  readonly pid: number;
  /**
   * Sends SIGTERM (unless it already exited) and waits for its exit; every
   * call after the first waits for the same.
   */
  stop(): Promise<void>;
}

/** Starts `main.ts` and resolves once it has printed its `listening on` line. */
export async function startServer(
  { args = [], dataDir = null, env, stderr = "null" }: ServerOptions = {},
): Promise<BenchServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
      ...(dataDir
        ? [`--allow-read=${dataDir}`, `--allow-write=${dataDir}`]
        : []),
      MAIN,
      "--port=0",
      "--hostname=127.0.0.1",
      ...args,
    ],
    env,
    stdin: "null",
    stdout: "piped",
    stderr,
  }).spawn();
  // Nothing but that line goes to stdout (logs go to stderr), so the pipe
  // never fills; it stays open until stop so no write lands on a closed one.
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening: ${out}`);
    out += value;
    port = Number(out.match(LISTENING)?.[1] ?? 0);
  }
  let stopped: Promise<void> | null = null;
  return {
    port,
    pid: child.pid,
    stop: () =>
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch (e) {
          // Already exited: a throw here would skip stopping the bench's
          // other processes.
          if (!(e instanceof TypeError)) throw e;
        }
        await reader.cancel();
        await child.status;
      })(),
  };
}
