/**
 * The client's side of the terminal or pipe: lines in from stdin, lines out
 * to stdout and stderr, and the user's wish to stop (EOF, Ctrl-C, SIGTERM).
 * On a terminal it is a `node:readline` prompt, so a line arriving while one
 * is half typed is printed above it and the typed text is redrawn intact; on
 * pipes it is plain line splitting with no echo and no prompt.
 *
 * @module
 */

import process from "node:process";
import { clearLine, createInterface, cursorTo } from "node:readline";
import type { Line } from "./transcript.ts";

/** What the console reports to the session. */
export interface ConsoleHandlers {
  /** A line was read (without its line break). */
  line(text: string): void;
  /** stdin ended (EOF, Ctrl-D) or stdout's reader went away. */
  end(): void;
  /** Ctrl-C, SIGINT or SIGTERM. */
  interrupt(): void;
}

/** An open console. */
export interface ChatConsole {
  /** Prints one line on stdout or stderr. */
  print(line: Line): void;
  /** Stops reading and restores the terminal. */
  close(): void;
}

/** Prompt shown on a terminal, so the typing line is told from chat lines. */
const PROMPT = "> ";

/**
 * Opens the console: the readline one when stdin and stdout are both a
 * terminal, the pipe one otherwise.
 */
export function openConsole(handlers: ConsoleHandlers): ChatConsole {
  const signals = listenForSignals(handlers.interrupt);
  const io = Deno.stdin.isTerminal() && Deno.stdout.isTerminal()
    ? terminalConsole(handlers)
    : pipeConsole(handlers);
  return {
    print: io.print,
    close() {
      signals();
      io.close();
    },
  };
}

/** SIGINT (and SIGTERM where it exists) call `onSignal`; returns the undo. */
function listenForSignals(onSignal: () => void): () => void {
  const names: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  for (const name of names) Deno.addSignalListener(name, onSignal);
  return () => {
    for (const name of names) Deno.removeSignalListener(name, onSignal);
  };
}

function terminalConsole(handlers: ConsoleHandlers): ChatConsole {
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: true,
    prompt: PROMPT,
  });
  let closing = false;
  rl.on("line", (text: string) => {
    handlers.line(text);
    rl.prompt();
  });
  // In raw mode Ctrl-C reaches readline as a key, not as a signal.
  rl.on("SIGINT", () => handlers.interrupt());
  rl.on("close", () => {
    if (!closing) handlers.end();
  });
  rl.prompt();
  return {
    print({ to, text }) {
      // Wipe the prompt line, print above it, then redraw the prompt with
      // the half-typed text and the cursor where they were.
      clearLine(process.stdout, 0);
      cursorTo(process.stdout, 0);
      (to === "out" ? process.stdout : process.stderr).write(text + "\n");
      if (!closing) rl.prompt(true);
    },
    close() {
      if (closing) return;
      closing = true;
      clearLine(process.stdout, 0);
      cursorTo(process.stdout, 0);
      rl.close();
    },
  };
}

function pipeConsole(handlers: ConsoleHandlers): ChatConsole {
  const encoder = new TextEncoder();
  let stdoutGone = false;
  const reading = new AbortController();
  readLines(handlers, reading.signal).catch((err) => {
    write(Deno.stderr, `hubbub: cannot read stdin: ${err}`);
    handlers.end();
  });

  function write(file: typeof Deno.stdout, text: string): void {
    const bytes = encoder.encode(text + "\n");
    for (let off = 0; off < bytes.length;) {
      off += file.writeSync(bytes.subarray(off));
    }
  }

  return {
    print({ to, text }) {
      if (to === "err") return write(Deno.stderr, text);
      if (stdoutGone) return;
      try {
        write(Deno.stdout, text);
      } catch (err) {
        // The reader of our stdout went away (`| head -1`): nothing more
        // can be shown, so the session ends as on EOF.
        if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
        stdoutGone = true;
        handlers.end();
      }
    },
    close() {
      reading.abort();
    },
  };
}

/** Reads stdin as lines (LF or CRLF; a last line without a break counts). */
async function readLines(
  handlers: ConsoleHandlers,
  signal: AbortSignal,
): Promise<void> {
  let rest = "";
  const chunks = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  for await (const chunk of chunks) {
    if (signal.aborted) return;
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      handlers.line(rest.slice(0, nl).replace(/\r$/, ""));
      rest = rest.slice(nl + 1);
    }
  }
  if (rest !== "") handlers.line(rest.replace(/\r$/, ""));
  handlers.end();
}
