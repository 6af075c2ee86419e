/**
 * What `hubbub connect` shows of a session: server frames in, output lines
 * out. It owns the session state that outlives one connection (the last seq
 * and epoch shown, for resuming without loss or repeats; the client's own
 * name; the sent messages not yet seen back) and no I/O, so every rule of
 * the display is tested without sockets.
 *
 * @module
 */

/** Where a line goes: chat to stdout, everything about the session to stderr. */
export type Stream = "out" | "err";

/** One line to print. */
export interface Line {
  /** stdout or stderr. */
  to: Stream;
  /** The text, without its newline. */
  text: string;
}

/** How incoming frames are shown. */
export type ViewMode =
  /** Plain protocol: each line of a frame as it is. */
  | "plain"
  /** JSON protocol, for people: `[HH:MM] name: text`. */
  | "chat"
  /** JSON protocol, for scripts: each object as the server sent it. */
  | "raw";

/**
 * Control characters other than tab, which would move the cursor or change
 * colours on the reader's terminal, are removed from what is printed.
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Removes terminal control characters from untrusted text. */
export function printable(text: string): string {
  return text.replace(CONTROL, "");
}

/** `[HH:MM]` in local time. */
export function clock(time: number): string {
  const d = new Date(time);
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  return `[${hh}:${mm}]`;
}

/** Where a JSON session stands: what to send as `since` and `epoch`. */
export interface Resume {
  /** The newest seq shown. */
  since: number;
  /** The epoch that seq belongs to. */
  epoch: string;
}

/** A chat message as it appears in `message` objects and welcome history. */
interface Chat {
  seq: number;
  from: string;
  time: number;
  text: string;
}

/**
 * The session's display and resume state. `open()` at each new connection,
 * `receive()` for each frame; `expect()` for each message sent, so that a
 * client at EOF can wait until its own messages have come back.
 */
export class Transcript {
  readonly #raw: boolean;
  #mode: ViewMode = "plain";
  #you = "";
  #resume: Resume | null = null;
  /** Plain: texts sent and not yet seen back; JSON: only their number counts. */
  #pending: string[] = [];

  /** `raw` prints JSON objects as they are (`--json`). */
  constructor(raw: boolean) {
    this.#raw = raw;
  }

  /** How frames of the current connection are shown. */
  get mode(): ViewMode {
    return this.#mode;
  }

  /** Where to resume a JSON session, or null before its first welcome. */
  get resume(): Resume | null {
    return this.#resume;
  }

  /** Messages sent on this connection that have not come back yet. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * A connection opened; `json` says whether the server chose `hubbub.v1`.
   * Messages awaited on the previous connection will not come back on this one.
   */
  open(json: boolean): Line[] {
    this.#pending = [];
    this.#mode = json ? (this.#raw ? "raw" : "chat") : "plain";
    if (this.#raw && !json) {
      return [{
        to: "err",
        text: "* the server speaks plain text: printing lines as they come",
      }];
    }
    return [];
  }

  /** Records a message sent, to be matched when it comes back. */
  expect(text: string): void {
    this.#pending.push(text.trim());
  }

  /** The lines to print for one text frame from the server. */
  receive(frame: string): Line[] {
    const lines: Line[] = [];
    for (const line of frame.split("\n")) {
      if (this.#mode === "plain") lines.push(...this.#plain(line));
      else if (line !== "") lines.push(...this.#json(line));
    }
    return lines;
  }

  #plain(line: string): Line[] {
    if (this.#pending.length > 0 && line.trim() === this.#pending[0]) {
      this.#pending.shift();
    }
    return [{ to: "out", text: printable(line) }];
  }

  #json(line: string): Line[] {
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      return [{ to: "err", text: `! unreadable line: ${printable(line)}` }];
    }
    if (typeof obj !== "object" || obj === null) {
      return [{ to: "err", text: `! unreadable line: ${printable(line)}` }];
    }
    const o = obj as Record<string, unknown>;
    const shown = this.#raw ? [{ to: "out" as const, text: line }] : [];
    switch (o.type) {
      case "welcome":
        return this.#welcome(o, line);
      case "message": {
        const chat = asChat(o);
        if (!chat) return [{ to: "err", text: `! bad message: ${line}` }];
        if (chat.from === this.#you && this.#pending.length > 0) {
          this.#pending.shift();
        }
        if (!this.#advance(chat.seq)) return [];
        return this.#raw ? shown : [this.#chatLine(chat)];
      }
      case "error":
        this.#pending.shift();
        return [...shown, {
          to: "err",
          text: `! ${text(o.code)}: ${text(o.message)}`,
        }];
      case "nick":
        if (o.from === this.#you && typeof o.name === "string") {
          this.#you = o.name;
        }
        return this.#raw
          ? shown
          : [{ to: "err", text: `* ${text(o.from)} is now ${text(o.name)}` }];
      case "join":
      case "leave": {
        if (this.#raw) return shown;
        if (o.type === "join" && o.name === this.#you) return [];
        const verb = o.type === "join" ? "joined" : "left";
        return [{ to: "err", text: `* ${text(o.name)} ${verb}` }];
      }
      case "presence": {
        if (this.#raw) return shown;
        const members = Array.isArray(o.members) ? o.members.map(text) : [];
        return [{
          to: "err",
          text: `* in ${text(o.room)}: ${members.join(", ")}`,
        }];
      }
      default:
        // Unknown types are ignored (PROTOCOL.md: either side may add).
        return shown;
    }
  }

  #welcome(o: Record<string, unknown>, line: string): Line[] {
    const lines: Line[] = [];
    const before = this.#resume;
    if (typeof o.you === "string") this.#you = o.you;
    const epoch = typeof o.epoch === "string" ? o.epoch : "";
    if (o.gap === true && before) {
      lines.push({
        to: "err",
        text: before.epoch === epoch
          ? `! gap: some messages after seq ${before.since} are no longer kept`
          : `! gap: the room's history started again (epoch ${
            printable(before.epoch)
          } -> ${printable(epoch)}); messages after seq ${before.since} ` +
            "may be lost",
      });
    }
    if (before === null || before.epoch !== epoch) {
      this.#resume = { since: 0, epoch };
    }
    const history = Array.isArray(o.history) ? o.history : [];
    const fresh: Chat[] = [];
    for (const item of history) {
      const chat = asChat(item);
      if (chat && this.#advance(chat.seq)) fresh.push(chat);
    }
    if (typeof o.seq === "number" && this.#resume) {
      this.#resume.since = Math.max(this.#resume.since, o.seq);
    }
    if (this.#raw) {
      // The object as sent, unless it repeats messages already printed: a
      // script reading welcome.history must not see them twice either.
      const text = fresh.length === history.length
        ? line
        : JSON.stringify({ ...o, history: fresh });
      lines.push({ to: "out", text });
      return lines;
    }
    const count = typeof o.memberCount === "number" ? o.memberCount : 1;
    lines.push({
      to: "err",
      text: `* joined ${text(o.room)} as ${text(o.you)} (${count} ${
        count === 1 ? "member" : "members"
      })`,
    });
    for (const chat of fresh) lines.push(this.#chatLine(chat));
    return lines;
  }

  /**
   * Moves the resume point to `seq`; false when `seq` was already shown in
   * this epoch, so that nothing is printed twice.
   */
  #advance(seq: number): boolean {
    if (!this.#resume) return true;
    if (seq <= this.#resume.since) return false;
    this.#resume.since = seq;
    return true;
  }

  #chatLine(chat: Chat): Line {
    // Continuation lines of a multi-line message are indented, so that
    // every message still starts a line with its time.
    const body = printable(chat.text).replaceAll("\n", "\n  ");
    return {
      to: "out",
      text: `${clock(chat.time)} ${printable(chat.from)}: ${body}`,
    };
  }
}

/** A server string field, printable; anything else as `?`. */
function text(value: unknown): string {
  return typeof value === "string" ? printable(value) : "?";
}

/** The chat fields of a server object, or null when they are malformed. */
function asChat(value: unknown): Chat | null {
  if (typeof value !== "object" || value === null) return null;
  const o = value as Record<string, unknown>;
  if (
    typeof o.seq !== "number" || typeof o.from !== "string" ||
    typeof o.time !== "number" || typeof o.text !== "string"
  ) return null;
  return { seq: o.seq, from: o.from, time: o.time, text: o.text };
}
