/**
 * `hubbub connect URL`: the command-line client. It reads lines from stdin
 * and sends each as a message, prints what arrives, closes with 1000 on EOF
 * or Ctrl-C, and ends with the exit codes of SPEC section 9. With
 * `--reconnect` it comes back after a lost connection, resuming a JSON
 * session after the last message shown.
 *
 * The session (this file) owns the socket and the order of events; what is
 * printed is the {@link Transcript}'s business, the flags are
 * `connect_options.ts`'s, and why an upgrade failed is found out by
 * `upgrade_probe.ts`.
 *
 * @module
 */

import { type ChatConsole, openConsole } from "./console_io.ts";
import {
  attemptUrl,
  backoffDelay,
  EXIT,
  type ExitCode,
  parseConnectArgs,
  UsageError,
} from "./connect_options.ts";
import type { ConnectOptions } from "./connect_options.ts";
import { JSON_SUBPROTOCOL } from "./protocol.ts";
import { type Line, Transcript } from "./transcript.ts";
import { probeUpgrade } from "./upgrade_probe.ts";

/** Runs `hubbub connect` with the arguments after `connect`; resolves to the exit code. */
export async function runConnect(args: string[]): Promise<ExitCode> {
  let command;
  try {
    command = parseConnectArgs(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`hubbub connect: ${err.message} (see hubbub connect --help)`);
    return EXIT.usage;
  }
  if (command.kind === "help") {
    console.log(command.text);
    return EXIT.ok;
  }
  return await new Session(command.options).run();
}

/** How long an opening handshake may take before the attempt counts as failed. */
const OPEN_TIMEOUT_MS = 15_000;
/**
 * At EOF, how long to wait for the messages sent to come back before
 * closing, so that `echo hi | hubbub connect` shows its own message.
 */
const DRAIN_MS = 2_000;
/** How long to wait for the server's close frame after sending ours. */
const CLOSE_WAIT_MS = 2_000;
/**
 * A connection that lasted this long resets the backoff: the next loss is a
 * new incident, not a server that drops everyone at once.
 */
const STABLE_MS = 10_000;
/** Lines kept while disconnected; beyond, new lines are dropped (and said so). */
const MAX_OUTBOX = 10_000;

/** Close codes with their usual meaning, for the closing line. */
const NORMAL = 1000;
const GOING_AWAY = 1001;

/** How one connection attempt ended. */
type Outcome =
  /** The user stopped the session; `answered` says the server closed too. */
  | { kind: "quit"; answered: boolean }
  /** The socket never opened. */
  | { kind: "failed"; code: ExitCode; message: string; retry: boolean }
  /** The socket opened and was closed by the server or the network. */
  | { kind: "closed"; event: CloseEvent; lived: number };

/**
 * One `hubbub connect` run: possibly several connections (with
 * `--reconnect`), one console, one transcript.
 */
class Session {
  readonly #options: ConnectOptions;
  readonly #transcript: Transcript;
  #console: ChatConsole | null = null;
  /** Lines read and not yet sent (the socket is not open, or just opened). */
  readonly #outbox: string[] = [];
  #outboxWarned = false;
  #socket: WebSocket | null = null;
  /** Set once: EOF lets sent messages come back first, interrupt does not. */
  #quit: "eof" | "interrupt" | null = null;
  readonly #quitRequested = Promise.withResolvers<void>();
  readonly #interrupted = Promise.withResolvers<void>();
  /** Woken when something the drain waits for changes. */
  #progress = Promise.withResolvers<void>();

  constructor(options: ConnectOptions) {
    this.#options = options;
    this.#transcript = new Transcript(options.json);
  }

  async run(): Promise<ExitCode> {
    this.#console = openConsole({
      line: (text) => this.#onLine(text),
      end: () => this.#requestQuit("eof"),
      interrupt: () => this.#requestQuit("interrupt"),
    });
    try {
      return await this.#loop();
    } finally {
      this.#console.close();
    }
  }

  async #loop(): Promise<ExitCode> {
    let attempt = 0;
    let connectedOnce = false;
    for (;;) {
      const outcome = await this.#connectOnce();
      if (outcome.kind === "quit") {
        if (!outcome.answered) {
          this.#say("hubbub: the server did not answer the close; exiting");
        }
        return EXIT.ok;
      }
      if (outcome.kind === "failed") {
        if (!this.#options.reconnect || !connectedOnce || !outcome.retry) {
          this.#say(`hubbub: ${outcome.message}`);
          return outcome.code;
        }
        this.#say(`! reconnect failed: ${outcome.message}`);
      } else {
        connectedOnce = true;
        const { code, wasClean } = outcome.event;
        const ended = closingLine(outcome.event);
        if (!this.#options.reconnect || (wasClean && code === NORMAL)) {
          this.#say(`hubbub: ${ended}`);
          return wasClean && (code === NORMAL || code === GOING_AWAY)
            ? EXIT.ok
            : EXIT.dropped;
        }
        if (outcome.lived >= STABLE_MS) attempt = 0;
        this.#say(`! ${ended}`);
      }
      if (this.#quit === "interrupt" || this.#doneAtEof()) {
        return this.#stopWhileDisconnected();
      }
      const delay = backoffDelay(attempt++);
      this.#say(`* reconnecting in ${(delay / 1000).toFixed(1)} s`);
      const stopped = await sleepUnless(delay, this.#interrupted.promise);
      if (stopped) return this.#stopWhileDisconnected();
    }
  }

  /** At EOF with nothing left to send there is no reason to come back. */
  #doneAtEof(): boolean {
    return this.#quit === "eof" && this.#outbox.length === 0;
  }

  #stopWhileDisconnected(): ExitCode {
    if (this.#outbox.length > 0) {
      this.#say(
        `hubbub: stopped while disconnected; ${this.#outbox.length} line(s) not sent`,
      );
      return EXIT.dropped;
    }
    return EXIT.ok;
  }

  /** One connection: open, talk until closed or told to stop, report how it ended. */
  async #connectOnce(): Promise<Outcome> {
    const url = attemptUrl(this.#options.url, this.#transcript.resume);
    const protocols = this.#options.protocols;
    const socket = new WebSocket(url, protocols);
    const opened = Promise.withResolvers<boolean>();
    const closed = Promise.withResolvers<CloseEvent>();
    let failure = "";
    socket.onopen = () => {
      this.#socket = socket;
      this.#print(this.#transcript.open(socket.protocol === JSON_SUBPROTOCOL));
      this.#flush();
      opened.resolve(true);
    };
    socket.onerror = (ev) => {
      failure = ev instanceof ErrorEvent ? ev.message : "error";
    };
    socket.onclose = (ev) => {
      if (this.#socket === socket) this.#socket = null;
      opened.resolve(false);
      closed.resolve(ev);
      this.#wake();
    };
    socket.onmessage = (ev: MessageEvent<unknown>) => {
      if (typeof ev.data === "string") {
        this.#print(this.#transcript.receive(ev.data));
      } else {
        this.#say("! a binary frame arrived; not printed");
      }
      this.#wake();
    };

    const settled = await sleepUnless(
      OPEN_TIMEOUT_MS,
      Promise.race([opened.promise, this.#interrupted.promise]),
    );
    if (socket.readyState !== WebSocket.OPEN) {
      if (socket.readyState === WebSocket.CONNECTING) socket.close();
      if (this.#quit === "interrupt") return { kind: "quit", answered: true };
      return await this.#explainFailure(
        url,
        settled ? failure : `no answer within ${OPEN_TIMEOUT_MS} ms`,
      );
    }

    const openedAt = Date.now();
    const closedByPeer = async (): Promise<Outcome> => ({
      kind: "closed",
      event: await closed.promise,
      lived: Date.now() - openedAt,
    });
    const stop = await Promise.race([
      closed.promise.then(() => false),
      this.#quitRequested.promise.then(() => true),
    ]);
    if (!stop) return await closedByPeer();
    if (this.#quit === "eof") await this.#drain(closed.promise);
    // The server closed (or the connection dropped) while our messages
    // drained: that close, not ours, is how the session ended.
    if (socket.readyState !== WebSocket.OPEN) return await closedByPeer();
    socket.close(NORMAL);
    // Not cut short by the interrupt that asked for the close: the close
    // frame must go out, and the server's answer is worth the short wait.
    const answered = await sleepUnless(CLOSE_WAIT_MS, closed.promise);
    return { kind: "quit", answered };
  }

  /**
   * Waits (up to {@link DRAIN_MS}) until everything read was sent and came
   * back, or the socket closed, or the user pressed Ctrl-C.
   */
  async #drain(closed: Promise<CloseEvent>): Promise<void> {
    const drained = Promise.withResolvers<void>();
    let over = false;
    const deadline = sleepUnless(
      DRAIN_MS,
      Promise.race([closed, this.#interrupted.promise, drained.promise]),
    ).then(() => void (over = true));
    while (
      !over && (this.#outbox.length > 0 || this.#transcript.pending > 0)
    ) {
      await Promise.race([this.#progress.promise, deadline]);
    }
    drained.resolve();
    await deadline;
  }

  /** Turns a failed opening into an exit code and one line, asking the server why. */
  async #explainFailure(url: URL, failure: string): Promise<Outcome> {
    const probe = await probeUpgrade(url, this.#options.protocols);
    // Without the query, which may carry a token.
    const where = `${url.protocol}//${url.host}${url.pathname}`;
    switch (probe.kind) {
      case "unreachable":
        return {
          kind: "failed",
          code: EXIT.unreachable,
          message: `cannot connect to ${probe.message}`,
          retry: true,
        };
      case "refused": {
        const reason = probe.reason === "" ? "" : `: ${probe.reason}`;
        return {
          kind: "failed",
          code: EXIT.refused,
          message:
            `${where} refused the upgrade: HTTP ${probe.status} ${probe.statusText.trim()}`
              .trimEnd() + reason,
          // Overload and server errors pass; a 4xx would say the same again.
          retry: probe.status >= 500 || probe.status === 429,
        };
      }
      case "accepted":
        return {
          kind: "failed",
          code: EXIT.unreachable,
          message:
            `cannot open ${where}: ${failure} (a second try was accepted)`,
          retry: true,
        };
      case "no_answer":
        return {
          kind: "failed",
          code: EXIT.unreachable,
          message: `cannot open ${where}: ${failure}; ${probe.message}`,
          retry: true,
        };
    }
  }

  #onLine(text: string): void {
    if (text.trim() === "") return;
    if (this.#outbox.length >= MAX_OUTBOX) {
      if (!this.#outboxWarned) {
        this.#say(`! more than ${MAX_OUTBOX} lines waiting; dropping input`);
        this.#outboxWarned = true;
      }
      return;
    }
    this.#outbox.push(text);
    this.#flush();
  }

  /** Sends what was read, in the protocol the server chose. */
  #flush(): void {
    const socket = this.#socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const json = this.#transcript.mode !== "plain";
    for (const text of this.#outbox.splice(0)) {
      if (!json) {
        socket.send(text);
        this.#transcript.expect(text);
        continue;
      }
      const command = chatCommand(text);
      socket.send(JSON.stringify(command));
      if (command.type === "message") this.#transcript.expect(text);
    }
    this.#outboxWarned = false;
    this.#wake();
  }

  #requestQuit(how: "eof" | "interrupt"): void {
    if (how === "interrupt") this.#interrupted.resolve();
    if (this.#quit === "interrupt") return;
    this.#quit = how;
    this.#quitRequested.resolve();
    this.#wake();
  }

  #wake(): void {
    this.#progress.resolve();
    this.#progress = Promise.withResolvers<void>();
  }

  #print(lines: Line[]): void {
    for (const line of lines) this.#console?.print(line);
  }

  #say(text: string): void {
    this.#print([{ to: "err", text }]);
  }
}

/** A JSON client frame for a typed line: `/nick NAME`, `/who`, or a message. */
function chatCommand(
  line: string,
):
  | { type: "message"; text: string }
  | { type: "nick"; name: string }
  | { type: "who" } {
  const nick = line.match(/^\/nick\s+(.+)$/);
  if (nick) return { type: "nick", name: nick[1] };
  if (line.trim() === "/who") return { type: "who" };
  return { type: "message", text: line };
}

/** The line that says how a connection ended. */
function closingLine(ev: CloseEvent): string {
  if (!ev.wasClean || ev.code === 1006 || ev.code === 0) {
    return "connection dropped (no close frame from the server)";
  }
  const reason = ev.reason === "" ? "" : ` ${ev.reason}`;
  if (ev.code === GOING_AWAY) return `the server went away (1001${reason})`;
  if (ev.code === NORMAL) {
    return `the server closed the connection (1000${reason})`;
  }
  return `the server closed the connection: ${ev.code}${reason}`;
}

/** Resolves true when `stop` settles first, false after `ms`. */
function sleepUnless(ms: number, stop: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slept = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  return Promise.race([slept, stop.then(() => true)]).finally(() =>
    clearTimeout(timer)
  );
}
