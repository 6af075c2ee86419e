/**
 * The hubbub command line: parses settings, serves a {@link createHubbub}
 * instance, and shuts it down cleanly on SIGINT or SIGTERM. `hubbub connect
 * URL` runs the command-line client instead (`connect.ts`).
 *
 * @module
 */

import { type Config, ConfigError, parseConfig } from "./config.ts";
import { DataFileError } from "./history_db.ts";
import { createLogger } from "./log.ts";
import { createHubbub } from "./mod.ts";

/**
 * Exit code for unusable settings, as with most Unix tools: a bad value, and
 * a certificate or key file that cannot be read or used alike.
 */
const EXIT_USAGE = 2;

/** Exit code for a `--data` file that cannot be used. */
const EXIT_DATA = 1;

/** The PEM texts `Deno.serve` takes for TLS. */
interface TlsFiles {
  cert: string;
  key: string;
}

/**
 * Reads `--cert` and `--key`, or none when TLS is off.
 *
 * @throws {ConfigError} naming the file that cannot be read.
 */
function readTls(config: Config): TlsFiles | undefined {
  if (config.cert === undefined || config.key === undefined) return undefined;
  const read = (flag: string, path: string): string => {
    try {
      return Deno.readTextFileSync(path);
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound
        ? "no such file"
        : err instanceof Deno.errors.NotCapable
        ? "no read permission (run Deno with --allow-read)"
        : err instanceof Error
        ? err.message.split("\n")[0]
        : String(err);
      throw new ConfigError(`--${flag}: cannot read "${path}": ${why}`);
    }
  };
  return { cert: read("cert", config.cert), key: read("key", config.key) };
}

/** Reads an environment variable, treating one we may not read as unset. */
function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) return undefined;
    throw err;
  }
}

/**
 * The one-line reason `Deno.serve` refused the settings, or null for an
 * error that is not about them: a port taken or an address this host does
 * not have (as from a second instance on the same port), or TLS files that
 * exist but hold no certificate or key.
 */
function listenFailure(
  err: unknown,
  withTls: boolean,
  config: Config,
): string | null {
  const first = (e: Error) => e.message.split("\n")[0];
  if (
    err instanceof Deno.errors.AddrInUse ||
    err instanceof Deno.errors.AddrNotAvailable
  ) {
    return `cannot listen on ${config.hostname}:${config.port}: ${first(err)}`;
  }
  if (withTls && err instanceof Deno.errors.InvalidData) {
    return `--cert/--key: ${first(err)}`;
  }
  return null;
}

/**
 * Runs the server until a signal stops it, or the client when the first
 * argument is `connect`; resolves to the exit code.
 */
export async function main(args: string[]): Promise<number> {
  const argv = args[0] === "--" ? args.slice(1) : args;
  if (argv[0] === "connect") {
    // Loaded only for the client: its terminal handling (node:readline)
    // added about 1.5 MB to the RSS of every idle server.
    const { runConnect } = await import("./connect.ts");
    return await runConnect(argv.slice(1));
  }
  let parsed;
  try {
    parsed = parseConfig(args, readEnv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`hubbub: ${err.message} (see --help)`);
    return EXIT_USAGE;
  }
  if (parsed.kind === "help") {
    console.log(parsed.text);
    return 0;
  }
  const config = parsed.config;
  let tls: TlsFiles | undefined;
  try {
    tls = readTls(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`hubbub: ${err.message}`);
    return EXIT_USAGE;
  }
  const logger = createLogger(config.logFormat);
  let hubbub;
  try {
    hubbub = createHubbub({ ...config, logger });
  } catch (err) {
    if (!(err instanceof DataFileError)) throw err;
    console.error(`hubbub: ${err.message}`);
    return EXIT_DATA;
  }
  // Listen for signals before announcing the port: a SIGTERM right after
  // "listening on" must still shut down gracefully.
  const stopSignal = new Promise<Deno.Signal>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      port: config.port,
      hostname: config.hostname,
      ...tls,
      onError(err) {
        logger.log("error", "request failed", { error: String(err) });
        return new Response("internal error\n", { status: 500 });
      },
      onListen({ hostname, port }) {
        const host = hostname.includes(":") ? `[${hostname}]` : hostname;
        const scheme = tls ? "https" : "http";
        console.log(`listening on ${scheme}://${host}:${port}/`);
        logger.log("info", "started", { hostname, port, pid: Deno.pid });
      },
    }, hubbub.handler);
  } catch (err) {
    const why = listenFailure(err, tls !== undefined, config);
    if (why === null) throw err;
    console.error(`hubbub: ${why}`);
    await hubbub.close(0);
    return EXIT_USAGE;
  }

  const signal = await stopSignal;
  logger.log("info", "stopping", { signal });
  const timeoutMs = config.shutdownTimeout * 1000;
  const deadline = setTimeout(() => {
    logger.log("warn", "shutdown timed out; exiting", { timeoutMs });
    Deno.exit(0);
  }, timeoutMs);
  await hubbub.close(timeoutMs);
  await server.shutdown();
  clearTimeout(deadline);
  logger.log("info", "stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
