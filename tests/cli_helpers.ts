/**
 * Test helpers for `hubbub connect`: the client as a real subprocess of
 * `main.ts`, with stdin to write to and stdout/stderr recorded.
 *
 * @module
 */

import { collectText, until, WAIT_MS, within } from "./helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The permissions `deno task start` grants, which the client must live with. */
export const START_PERMISSIONS = [
  "--allow-net",
  "--allow-env=HUBBUB_*,DENO_USE_WRITEV",
  "--allow-read",
  "--allow-write",
];

/** A running `hubbub connect` subprocess. */
export interface ClientProcess {
  child: Deno.ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** stdout lines so far (the last, unterminated one excluded). */
  lines(): string[];
  /** Writes `text` to the client's stdin. */
  write(text: string): Promise<void>;
  /** Closes the client's stdin (EOF). */
  end(): Promise<void>;
  /** Waits until stdout or stderr matches `pattern`. */
  waitFor(pattern: RegExp, what?: string, ms?: number): Promise<void>;
  /** Waits for the exit status (sending `signal` first, if given). */
  exit(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Starts `main.ts connect ...args` with piped stdin, stdout and stderr. */
export function spawnClient(
  args: string[],
  denoFlags: string[] = START_PERMISSIONS,
): ClientProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...denoFlags, MAIN, "connect", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  let err = "";
  const outDone = collectText(child.stdout, (c) => out += c);
  const errDone = collectText(child.stderr, (c) => err += c);
  const stdin = child.stdin.getWriter();
  let stdinOpen = true;
  const encoder = new TextEncoder();
  let exited: Promise<Deno.CommandStatus> | null = null;
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    lines: () => out.split("\n").slice(0, -1),
    write: (text) => stdin.write(encoder.encode(text)),
    async end() {
      if (!stdinOpen) return;
      stdinOpen = false;
      await stdin.close();
    },
    waitFor(pattern, what = String(pattern), ms = WAIT_MS) {
      return until(
        () => pattern.test(out) || pattern.test(err),
        `${what}\n--- stdout:\n${out}\n--- stderr:\n${err}`,
        ms,
      );
    },
    exit(signal) {
      exited ??= (async () => {
        if (signal) child.kill(signal);
        const status = await within(child.status, "client exit");
        if (stdinOpen) {
          stdinOpen = false;
          // The child is gone, so its end of the pipe may be too: closing
          // only releases ours, and a BrokenPipe says nothing about the test.
          await stdin.close().catch((e) => {
            if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
          });
        }
        await Promise.all([outDone, errDone]);
        return status;
      })();
      return exited;
    },
  };
}

/**
 * Runs the client to the end with `input` on stdin; the exit code and
 * everything it printed.
 */
export async function runClient(
  args: string[],
  input = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const client = spawnClient(args);
  if (input !== "") await client.write(input);
  await client.end();
  const status = await client.exit();
  return {
    code: status.code,
    stdout: client.stdout(),
    stderr: client.stderr(),
  };
}
