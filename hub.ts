/**
 * The hub: rooms, their members, the order of messages, and delivery.
 *
 * Delivery is batched per event-loop turn. Accepting a message only appends
 * it to its room's pending list; one flush per turn then builds each room's
 * outgoing frame once per wire format (plain lines or JSON lines joined by
 * `\n`) and hands the same string to every member, so a member gets at most
 * one frame per turn however many messages arrived. This is the classic Go
 * writer's batching moved from per-connection goroutines to the event loop:
 * `send()` calls, frames and allocations scale with members × turns instead
 * of members × messages, which is what lets one Deno isolate outrun the Go
 * and Bun reference hubs. Nothing on this path awaits: a slow member can
 * only grow its own socket buffer, and is evicted once that passes the limit.
 *
 * @module
 */

import type { HistoryStore } from "./history.ts";
import type { EvictionReason, Metrics } from "./metrics.ts";
import {
  type ChatRecord,
  encodeChat,
  encodeError,
  encodeMembership,
  encodeNick,
  encodePresence,
  encodeWelcome,
  type ErrorCode,
  normalizePlain,
  utf8Length,
} from "./protocol.ts";

/**
 * Above this many members a room stops announcing joins and leaves, and a
 * welcome lists only this many names (with the full count). Both cost
 * O(members) per join, which is O(members²) for a room filling up: at 10,000
 * JSON clients that was a gigabyte of welcomes. `who` still lists everyone.
 */
export const LARGE_ROOM = 200;

/** What the hub needs of a connection; {@link Client} is the real one. */
export interface Member {
  /** Unique per process, for logs. */
  readonly id: number;
  /** The socket frames are sent on. */
  readonly socket: WebSocket;
  /** Speaks the JSON protocol (else plain text). */
  readonly json: boolean;
  /** Display name, unique within the room. */
  name: string;
  /** The room it is in; null before join and after leave. */
  room: Room | null;
  /** Lines for this member alone, sent with its next frame. */
  outbox: string[] | null;
  /** Called once when the hub removes the member against its will. */
  evicted(reason: EvictionReason, code: number, text: string): void;
}

/** One event waiting for this turn's flush. */
export interface PendingEvent {
  /** Line for plain clients; null for events they do not see. */
  plain: string | null;
  /** A chat message, encoded for JSON clients only if any are present. */
  rec: ChatRecord | null;
  /** A ready JSON line for non-message events. */
  json: string | null;
}

/** A room: its members, names and the messages accepted this turn. */
export class Room {
  /** The room's name, as in `?room=`. */
  readonly name: string;
  /** Everyone who receives the room's messages. */
  readonly members = new Set<Member>();
  /** Members by name, so names stay unique. */
  readonly names = new Map<string, Member>();
  /** Members speaking JSON; the JSON frame is built only when non-zero. */
  jsonMembers = 0;
  /** Newest seq accepted. */
  seq: number;
  /** Newest seq already flushed; history up to here is what a joiner gets. */
  flushedSeq: number;
  /** Events accepted this turn, not yet flushed. */
  pending: PendingEvent[] = [];
  /** Whether the room is already in this turn's flush list. */
  dirty = false;

  /** A room continuing from `lastSeq` (0 for a new one). */
  constructor(name: string, lastSeq: number) {
    this.name = name;
    this.seq = lastSeq;
    this.flushedSeq = lastSeq;
  }
}

/** Settings the hub enforces. */
export interface HubOptions {
  /** Unsent bytes a member may have before it is evicted. */
  maxBufferedBytes: number;
  /** Where chat messages are kept for joins and reconnects. */
  history: HistoryStore;
  /** Counters the hub bumps. */
  metrics: Metrics;
}

/** Owns every room and decides who receives what, in which order. */
export class Hub {
  readonly #rooms = new Map<string, Room>();
  readonly #opts: HubOptions;
  #dirtyRooms: Room[] = [];
  #dirtyMembers: Member[] = [];
  #timer: ReturnType<typeof setImmediate> | null = null;
  #stopped = false;

  /** A hub with no rooms yet. */
  constructor(opts: HubOptions) {
    this.#opts = opts;
  }

  /** Rooms with at least one member. */
  get roomCount(): number {
    return this.#rooms.size;
  }

  /**
   * Adds a member to a room. A JSON member is welcomed with the member list
   * and the history after `since` (everything kept when absent); the rest of
   * the room hears a `join`. A name already taken in the room gets a numeric
   * suffix.
   */
  join(
    member: Member,
    roomName: string,
    since?: number,
    epoch?: string,
  ): void {
    let room = this.#rooms.get(roomName);
    if (!room) {
      room = new Room(roomName, this.#opts.history.lastSeq(roomName));
      this.#rooms.set(roomName, room);
    }
    member.name = uniqueName(room, member.name);
    member.room = room;
    room.members.add(member);
    room.names.set(member.name, member);
    if (member.json) {
      room.jsonMembers++;
      // History stops at flushedSeq: newer messages are still pending and
      // reach the new member in this turn's frame, after the welcome.
      const slice = this.#opts.history.read(
        room.name,
        since,
        epoch,
        room.flushedSeq,
      );
      this.sendTo(
        member,
        encodeWelcome({
          type: "welcome",
          you: member.name,
          room: room.name,
          members: firstNames(room, LARGE_ROOM),
          memberCount: room.members.size,
          history: slice.records,
          gap: slice.gap,
          seq: room.flushedSeq,
          epoch: slice.epoch,
        }),
      );
    }
    if (room.members.size > LARGE_ROOM) return;
    this.#announce(room, encodeMembership("join", member.name, Date.now()));
  }

  /** Removes a member from its room; the others hear a `leave`. Idempotent. */
  leave(member: Member): void {
    const room = member.room;
    if (!room) return;
    member.room = null;
    member.outbox = null;
    room.members.delete(member);
    room.names.delete(member.name);
    if (member.json) room.jsonMembers--;
    if (room.members.size === 0) {
      this.#rooms.delete(room.name);
      return;
    }
    if (room.members.size >= LARGE_ROOM) return;
    this.#announce(room, encodeMembership("leave", member.name, Date.now()));
  }

  /** Accepts a chat message from a member: it gets the room's next seq. */
  publish(member: Member, text: string): void {
    const room = member.room;
    if (!room) return;
    const rec: ChatRecord = {
      seq: ++room.seq,
      from: member.name,
      time: Date.now(),
      text,
    };
    this.#opts.history.append(room.name, rec);
    this.#opts.metrics.messagesReceived++;
    this.#enqueue(room, { plain: normalizePlain(text), rec, json: null });
  }

  /** Changes a member's name, or tells it why not. */
  rename(member: Member, name: string): void {
    const room = member.room;
    if (!room || name === member.name) return;
    if (room.names.has(name)) {
      this.sendError(member, "name_taken", `"${name}" is taken in this room`);
      return;
    }
    const old = member.name;
    room.names.delete(old);
    room.names.set(name, member);
    member.name = name;
    this.#announce(room, encodeNick(old, name, Date.now()));
  }

  /** Sends a member the room's member list. */
  who(member: Member): void {
    const room = member.room;
    if (!room) return;
    this.sendTo(member, encodePresence(room.name, [...room.names.keys()]));
  }

  /** Sends a member an error message (JSON members only). */
  sendError(member: Member, code: ErrorCode, message: string): void {
    if (member.json) this.sendTo(member, encodeError(code, message));
  }

  /** Queues a line for one member; it goes out with this turn's flush. */
  sendTo(member: Member, line: string): void {
    if (!member.room) return;
    if (member.outbox) {
      member.outbox.push(line);
      return;
    }
    member.outbox = [line];
    this.#dirtyMembers.push(member);
    this.#schedule();
  }

  /**
   * Removes a member at once (nothing more is queued for it) and has it
   * closed with `code`.
   */
  evict(
    member: Member,
    reason: EvictionReason,
    code: number,
    text: string,
  ): void {
    if (!member.room) return;
    // Lines already queued for it (such as the error that explains this
    // close) still go out, except to a slow consumer, which cannot take them.
    if (member.outbox && reason !== "slow_consumer") {
      this.#send(member, "", 0, 0);
      if (!member.room) return; // that send found it too slow and evicted it
    }
    this.leave(member);
    member.evicted(reason, code, text);
  }

  /** Members of every room, for shutdown. */
  *members(): Iterable<Member> {
    for (const room of this.#rooms.values()) yield* room.members;
  }

  /** Queues a room event that only JSON members see (join, leave, nick). */
  #announce(room: Room, json: string): void {
    this.#enqueue(room, { plain: null, rec: null, json });
  }

  #enqueue(room: Room, event: PendingEvent): void {
    room.pending.push(event);
    if (!room.dirty) {
      room.dirty = true;
      this.#dirtyRooms.push(room);
      this.#schedule();
    }
  }

  /** True once {@link stop} was called. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Stops delivering: nothing queued now or later is sent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearImmediate(this.#timer);
    this.#timer = null;
  }

  #schedule(): void {
    if (this.#timer !== null || this.#stopped) return;
    // A macrotask, not a microtask: every socket read that completed in this
    // turn of the event loop is accepted before anything is sent. Not
    // setTimeout(0) either: Deno clamps it to a millisecond or more, which
    // is pure added latency.
    this.#timer = setImmediate(this.#flush);
  }

  #flush = (): void => {
    this.#timer = null;
    const rooms = this.#dirtyRooms;
    const members = this.#dirtyMembers;
    this.#dirtyRooms = [];
    this.#dirtyMembers = [];
    for (const room of rooms) this.#flushRoom(room);
    for (const member of members) {
      if (member.outbox) this.#send(member, "", 0, 0);
    }
  };

  #flushRoom(room: Room): void {
    const events = room.pending;
    room.pending = [];
    room.dirty = false;
    room.flushedSeq = room.seq;

    const withJson = room.jsonMembers > 0;
    let plain = "";
    let plainCount = 0;
    let json = "";
    let chatCount = 0;
    for (const ev of events) {
      if (ev.rec !== null) chatCount++;
      if (ev.plain !== null && ev.plain !== "") {
        plain = plainCount === 0 ? ev.plain : plain + "\n" + ev.plain;
        plainCount++;
      }
      if (withJson) {
        const line = ev.json ?? encodeChat(room.name, ev.rec!);
        json = json === "" ? line : json + "\n" + line;
      }
    }
    const plainBytes = plainCount > 0 ? utf8Length(plain) : 0;
    const jsonBytes = json === "" ? 0 : utf8Length(json);

    for (const member of room.members) {
      if (member.json) this.#send(member, json, jsonBytes, chatCount);
      else this.#send(member, plain, plainBytes, plainCount);
    }
  }

  /**
   * Sends `shared` (plus the member's own pending lines, first) as one frame,
   * unless the member is already too far behind.
   */
  #send(
    member: Member,
    shared: string,
    bytes: number,
    messages: number,
  ): void {
    let frame = shared;
    if (member.outbox) {
      const own = member.outbox.join("\n");
      member.outbox = null;
      frame = shared === "" ? own : own + "\n" + shared;
      bytes = utf8Length(frame);
    }
    if (frame === "") return;
    const socket = member.socket;
    if (socket.readyState !== WebSocket.OPEN) return;
    if (socket.bufferedAmount > this.#opts.maxBufferedBytes) {
      this.evict(member, "slow_consumer", 1008, "slow consumer");
      return;
    }
    socket.send(frame);
    const metrics = this.#opts.metrics;
    metrics.framesOut++;
    metrics.bytesOut += bytes;
    metrics.messagesDelivered += messages;
  }
}

/** Up to `limit` member names, without copying a large room's whole list. */
function firstNames(room: Room, limit: number): string[] {
  const names: string[] = [];
  for (const name of room.names.keys()) {
    if (names.length === limit) break;
    names.push(name);
  }
  return names;
}

/** `name`, or `name-2`, `name-3`… whichever is free in the room. */
function uniqueName(room: Room, name: string): string {
  if (!room.names.has(name)) return name;
  for (let i = 2;; i++) {
    const candidate = `${name.slice(0, 28)}-${i}`;
    if (!room.names.has(candidate)) return candidate;
  }
}
