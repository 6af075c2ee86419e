/**
 * The wire formats of the chat socket, and the validation of everything a
 * client sends. Input from the network is checked here, once, and turned into
 * typed values; the hub never sees raw frames. PROTOCOL.md documents the same
 * types for client authors.
 *
 * @module
 */

/** The subprotocol that selects the JSON wire format. */
export const JSON_SUBPROTOCOL = "hubbub.v1";

/**
 * Prefix of the `Sec-WebSocket-Protocol` entry that carries a token:
 * `bearer.<JWT>`. A browser cannot set headers on a WebSocket, and a token in
 * the URL ends up in logs; this entry is the one place a page can put it
 * otherwise. The server never echoes it.
 */
export const BEARER_PREFIX = "bearer.";

/** Room a socket joins when `?room=` is absent. */
export const DEFAULT_ROOM = "lobby";

/** Longest nickname, in UTF-16 code units; long enough for any real name. */
export const MAX_NAME_LENGTH = 32;

const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const LINE_BREAKS = /\r\n|\r|\n/g;
// Control characters other than tab and newline render as garbage or move
// the cursor in terminals; they are removed from JSON text.
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
// deno-lint-ignore no-control-regex
const NAME_CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Whether `name` is a valid room name (1–64 of `[A-Za-z0-9_.-]`). */
export function isRoomName(name: string): boolean {
  return ROOM_NAME.test(name);
}

/**
 * The plain protocol's rule, from the Go chat example: newlines become
 * spaces and surrounding white space is trimmed. Other control characters
 * are removed, as in JSON text, so that no sender can put terminal escapes
 * on another client's screen. An empty result means the message is dropped.
 */
export function normalizePlain(text: string): string {
  return text.replace(LINE_BREAKS, " ").replace(CONTROL, "").trim();
}

/**
 * Text of a JSON chat message: control characters other than newline and
 * tab removed, line breaks unified to `\n`, surrounding white space trimmed.
 */
export function normalizeJsonText(text: string): string {
  return text.replace(LINE_BREAKS, "\n").replace(CONTROL, "").trim();
}

/**
 * Validates a nickname: trimmed, 1–{@link MAX_NAME_LENGTH} characters, no
 * control characters. Returns the clean name or an error message.
 */
export function checkName(raw: string): { name: string } | { error: string } {
  const name = raw.trim();
  if (name === "") return { error: "name must not be empty" };
  if (name.length > MAX_NAME_LENGTH) {
    return { error: `name longer than ${MAX_NAME_LENGTH} characters` };
  }
  if (NAME_CONTROL.test(name)) {
    return { error: "name contains control characters" };
  }
  return { name };
}

/** UTF-8 length of `s` without encoding it. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff) i++, n += 2;
    else n += 2;
  }
  return n;
}

/** Whether `s` is longer than `max` UTF-8 bytes; exact, and cheap for ASCII. */
export function exceedsBytes(s: string, max: number): boolean {
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  return utf8Length(s) > max;
}

// ---- JSON protocol: client to server ----

/** A chat message to the client's room. */
export interface SendMessage {
  /** Discriminant. */
  type: "message";
  /** Cleaned text, never empty. */
  text: string;
}

/** A request to change the client's nickname. */
export interface NickRequest {
  /** Discriminant. */
  type: "nick";
  /** A valid name (see {@link checkName}). */
  name: string;
}

/** A request for the room's member list. */
export interface WhoRequest {
  /** Discriminant. */
  type: "who";
}

/** Records per scrollback page when the request names no `limit`. */
export const HISTORY_PAGE_DEFAULT = 50;

/** Largest scrollback page; a larger `limit` is cut to this. */
export const HISTORY_PAGE_MAX = 200;

/** A request for older messages (scrollback). */
export interface HistoryRequest {
  /** Discriminant. */
  type: "history";
  /** Messages with a smaller seq; absent: the newest page. */
  before?: number;
  /** Page size, 1–{@link HISTORY_PAGE_MAX}. */
  limit: number;
}

/** A fresh token for the connection, before the current one expires. */
export interface TokenRefresh {
  /** Discriminant. */
  type: "token";
  /** The JWT, unverified. */
  token: string;
}

/** Every message a JSON client may send, validated. */
export type ClientMessage =
  | SendMessage
  | NickRequest
  | WhoRequest
  | HistoryRequest
  | TokenRefresh;

/** Machine-readable error codes sent in `error` messages. */
export type ErrorCode =
  | "bad_json"
  | "bad_message"
  | "unknown_type"
  | "empty_message"
  | "bad_name"
  | "name_taken"
  | "rate_limited"
  | "not_stored"
  | "history_unavailable"
  | "auth_name"
  | "bad_token"
  | "unavailable";

/** A client frame that could not be accepted; the connection stays open. */
export interface ProtocolError {
  /** Discriminant. */
  type: "error";
  /** What went wrong, for programs. */
  code: ErrorCode;
  /** What went wrong, for people. */
  message: string;
}

function protocolError(code: ErrorCode, message: string): ProtocolError {
  return { type: "error", code, message };
}

/**
 * Parses one JSON-protocol frame into a typed message, or the error to send
 * back. Extra fields are ignored so that newer clients keep working.
 */
export function parseClientMessage(
  frame: string,
): ClientMessage | ProtocolError {
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch {
    return protocolError("bad_json", "frame is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return protocolError("bad_message", "expected a JSON object");
  }
  const msg = value as Record<string, unknown>;
  switch (msg.type) {
    case "message": {
      if (typeof msg.text !== "string") {
        return protocolError("bad_message", "message needs a string text");
      }
      const text = normalizeJsonText(msg.text);
      if (text === "") return protocolError("empty_message", "text is empty");
      return { type: "message", text };
    }
    case "nick": {
      if (typeof msg.name !== "string") {
        return protocolError("bad_name", "nick needs a string name");
      }
      const checked = checkName(msg.name);
      if ("error" in checked) return protocolError("bad_name", checked.error);
      return { type: "nick", name: checked.name };
    }
    case "who":
      return { type: "who" };
    case "history":
      return parseHistoryRequest(msg);
    case "token":
      if (typeof msg.token !== "string" || msg.token === "") {
        return protocolError("bad_token", "token needs a string token");
      }
      return { type: "token", token: msg.token };
    default:
      return protocolError(
        "unknown_type",
        typeof msg.type === "string"
          ? `unknown message type "${msg.type.slice(0, 40)}"`
          : "message needs a string type",
      );
  }
}

function parseHistoryRequest(
  msg: Record<string, unknown>,
): HistoryRequest | ProtocolError {
  const { before, limit } = msg;
  if (before !== undefined && !isCount(before, 1)) {
    return protocolError("bad_message", "before must be a whole number >= 1");
  }
  if (limit !== undefined && !isCount(limit, 1)) {
    return protocolError("bad_message", "limit must be a whole number >= 1");
  }
  return {
    type: "history",
    ...(before === undefined ? {} : { before }),
    limit: Math.min(limit ?? HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX),
  };
}

/** Whether `v` is a safe integer of at least `min`. */
function isCount(v: unknown, min: number): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= min;
}

// ---- JSON protocol: server to client ----

/** A chat message as stored in history and sent to JSON clients. */
export interface ChatRecord {
  /** Position in the room's order, from 1, without gaps. */
  seq: number;
  /** Sender's name at the time of sending. */
  from: string;
  /** Server time of acceptance, milliseconds since the Unix epoch. */
  time: number;
  /** The message text. */
  text: string;
}

/** The first message of every JSON connection. */
export interface Welcome {
  /** Discriminant. */
  type: "welcome";
  /** This connection's name. */
  you: string;
  /** The room joined. */
  room: string;
  /**
   * Names of the members, this connection included; in a room of more than
   * 200, only this connection's (ask with `who` for everyone).
   */
  members: string[];
  /** How many members the room has (may exceed `members.length`). */
  memberCount: number;
  /** Recent history, or what followed `since`, oldest first. */
  history: ChatRecord[];
  /** True when messages after `since` were dropped from history already. */
  gap: boolean;
  /** Sequence number of the newest message in the room so far. */
  seq: number;
  /** This life of the room's numbering; send it back with `since`. */
  epoch: string;
}

/** Encodes a chat record as a JSON-protocol frame line. */
export function encodeChat(room: string, rec: ChatRecord): string {
  return JSON.stringify({ type: "message", room, ...rec });
}

/**
 * Encodes the news that the room's numbering started again (with
 * `--redis`, Redis lost the room's state): messages from now on follow
 * `seq` in `epoch`, and a reconnect sends this epoch.
 */
export function encodeEpoch(room: string, epoch: string, seq: number): string {
  return JSON.stringify({ type: "epoch", room, epoch, seq });
}

/** Encodes a membership event (`join` or `leave`) for the room. */
export function encodeMembership(
  type: "join" | "leave",
  name: string,
  time: number,
): string {
  return JSON.stringify({ type, name, time });
}

/** Encodes a nickname change visible to the whole room. */
export function encodeNick(from: string, name: string, time: number): string {
  return JSON.stringify({ type: "nick", from, name, time });
}

/** Encodes the member list sent in reply to `who`. */
export function encodePresence(room: string, members: string[]): string {
  return JSON.stringify({ type: "presence", room, members });
}

/** Encodes a scrollback page, the reply to a `history` request. */
export function encodeHistory(
  room: string,
  page: { epoch: string; records: ChatRecord[]; more: boolean },
): string {
  return JSON.stringify({
    type: "history",
    room,
    epoch: page.epoch,
    messages: page.records,
    more: page.more,
  });
}

/** Encodes the welcome sent on join. */
export function encodeWelcome(w: Welcome): string {
  return JSON.stringify(w);
}

/** Encodes an error for one client. */
export function encodeError(code: ErrorCode, message: string): string {
  return JSON.stringify(protocolError(code, message));
}
