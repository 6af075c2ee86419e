/**
 * The hub: rooms, their members, the order of messages, and delivery.
 *
 * Accepting a message only appends it to its room's log. Delivery walks the
 * room's members in passes: visiting a member sends it, as one frame (or a
 * few, past {@link FRAME_CHARS}), everything in the log it has not had yet
 * (plain lines or JSON lines joined by `\n`), and moves its cursor to the
 * log's end. This is the classic Go writer's batching ("send everything
 * queued as one frame") moved from per-connection goroutines to the event
 * loop: `send()` calls and frames scale with members × visits instead of
 * members × messages, and members with the same cursor share one frame
 * string, built once per format.
 *
 * Each event-loop turn makes at most {@link SENDS_PER_TURN} sends, across
 * all rooms, and then yields, so the writes already queued go out and
 * messages that arrived meanwhile ride along with the members not yet
 * visited. Sending to everyone in one go would make a message that arrives
 * during a long pass wait for the whole pass before its own begins: up to
 * two passes of latency instead of one. Nothing on this path awaits: a slow
 * member can only grow its own socket buffer, and is evicted once that
 * passes the limit.
 *
 * Every turn begins by committing the history appended since the last one
 * (one transaction with `--data`; nothing in memory, nor with a relay, whose
 * Redis stored each message before handing it here), and so do the other
 * places that send or read history for a client: nothing reaches anyone
 * before it is stored. What fails to store is taken out of the logs, its
 * seqs given back and its senders told, before anything is sent.
 *
 * @module
 */

import {
  type HistoryPage,
  type HistoryStore,
  HistoryUnavailable,
  type Unstored,
} from "./history.ts";
import type { InFlight } from "./inflight.ts";
import type { EvictionReason, Metrics } from "./metrics.ts";
import {
  type ChatRecord,
  encodeChat,
  encodeEpoch,
  encodeError,
  encodeHistory,
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
 * welcome lists only the joiner (with the full count). Both cost O(members)
 * per join, which is O(members²) for a room filling up: at 10,000 JSON
 * clients that was a gigabyte of welcomes. Even a list capped at 200 names
 * cut the connect rate by a fifth and left 2.5 KB more per socket, for a
 * sample of the room nobody keeps up to date. `who` still lists everyone.
 */
export const LARGE_ROOM = 200;

/**
 * Sends per event-loop turn, all rooms together, before delivery yields.
 * A send is a few microseconds of mostly kernel time on loopback; 256 keep
 * a turn around a millisecond or two, so reads and writes interleave finely
 * while the cost of a turn stays negligible.
 */
export const SENDS_PER_TURN = 256;

/**
 * Largest frame the log is cut into, in UTF-16 code units (bytes for ASCII).
 * A member far behind gets its backlog as several frames in one visit: the
 * same bytes reach its socket, but no frame string grows with the backlog.
 * Uncut, frames under overload (JSON, 6,400 messages/s into 1,000 members)
 * reached a quarter of a megabyte, each a fresh large allocation in V8 and
 * again in Deno's copy, paid in page faults, and a lump the client must take
 * whole; delivery fell to 0.56M/s from 3.2M/s one step lower. Cut, the same
 * overload still delivers 2.6M/s. Normal load (about 20 messages per frame)
 * stays far below the cap.
 */
export const FRAME_CHARS = 32 * 1024;

/**
 * What a plain sender is sent, alone, when its message could not be stored
 * and so was delivered to nobody. The plain protocol has no errors; a line
 * only the sender sees is what a person at a plain chat page can read.
 */
export const PLAIN_NOT_STORED =
  "[hubbub] your last message was not delivered: the server could not store it";

/** What the hub needs of a connection; {@link Client} is the real one. */
export interface Member {
  /** Unique per process, for logs. */
  readonly id: number;
  /** The socket frames are sent on. */
  readonly socket: WebSocket;
  /** Speaks the JSON protocol (else plain text). */
  readonly json: boolean;
  /** Display name, unique within the room but for sockets of one user. */
  name: string;
  /** The signed-in user (token `sub`); its sockets are one person. */
  readonly user?: string;
  /** The room it is in; null before join and after leave. */
  room: Room | null;
  /** Lines for this member alone, sent at its next visit. */
  outbox: OwnLine[] | null;
  /** Index in its room's log of the first event it has not been sent. */
  cursor: number;
  /** Its socket's queued frames, for what they hold beyond `bufferedAmount`. */
  readonly inFlight: InFlight;
  /** Called once when the hub removes the member against its will. */
  evicted(reason: EvictionReason, code: number, text: string): void;
  /** Called once the member is in its room (at once, unless a relay loads it). */
  joined(): void;
  /**
   * Closes the socket of a member the hub has let go (not an eviction),
   * once what is queued for it went out (closing.ts).
   */
  close(code: number, text: string): void;
  /**
   * False once its socket closed or was let go: a socket being let go stays
   * open until its queue drains (closing.ts), so `readyState` alone cannot
   * say whether a join the relay finishes later may still take it in.
   */
  readonly live: boolean;
}

/**
 * A line for one member (welcome, presence, error), with the place in the
 * room's log it was decided at: it follows the events before that index and
 * precedes the rest, so a reply never overtakes a room event queued before
 * it.
 */
export interface OwnLine {
  /** The JSON line. */
  text: string;
  /** The room's log end when the line was queued. */
  after: number;
}

/** Frames ready to send, with what they count for in the metrics. */
interface Frames {
  frames: readonly string[];
  bytes: number;
  /** Chat messages in them. */
  messages: number;
}

/** One room event not yet delivered to every member. */
export interface LogEvent {
  /** Line for plain clients; null for events they do not see. */
  plain: string | null;
  /** The chat message, for events that are one. */
  rec: ChatRecord | null;
  /** The JSON line; for a chat message, encoded when a JSON member needs it. */
  json: string | null;
  /** Who sent the chat message, to be told if storing it fails. */
  sender: Member | null;
}

/** What the members visited with the same part of the log are sent. */
interface Batch {
  /** Frames of plain lines joined by `\n`; built only when the room has plain members. */
  plain: string[];
  plainBytes: number;
  /** Chat messages in `plain`. */
  plainMessages: number;
  /** Frames of JSON lines; built only when the room has JSON members. */
  json: string[];
  jsonBytes: number;
  /** Chat messages in `json`. */
  jsonMessages: number;
}

/** A room: its members, names, and the events on their way to them. */
export class Room {
  /** The room's name, as in `?room=`. */
  readonly name: string;
  /** Everyone who receives the room's messages. */
  readonly members = new Set<Member>();
  /** Members by name, so names stay unique. */
  readonly names = new Map<string, Member>();
  /**
   * Signed-in users here, by `sub`: their one name and how many sockets
   * they have in the room. A user's second tab adds a socket, not a person.
   */
  readonly users = new Map<string, { name: string; sockets: number }>();
  /** Members speaking JSON; the JSON frame is built only when non-zero. */
  jsonMembers = 0;
  /** Newest seq accepted; history up to here is what a joiner gets. */
  seq: number;
  /**
   * Events some member has not been sent yet. `log[0]` has index
   * `logStart`; indices only grow, and members' cursors point into them.
   */
  log: LogEvent[] = [];
  /** Index of `log[0]`. */
  logStart = 0;
  /** Members still to visit in the pass under way; null between passes. */
  pass: Iterator<Member> | null = null;
  /** The log's end when the current pass began. */
  passEnd = 0;
  /** Batches by first index, all ending at {@link batchEnd}. */
  readonly batches = new Map<number, Batch>();
  /** The log end the cached batches run to. */
  batchEnd: number = -1;

  /** A room continuing from `lastSeq` (0 for a new one). */
  constructor(name: string, lastSeq: number) {
    this.name = name;
    this.seq = lastSeq;
  }

  /**
   * Whether delivery has work here: a pass under way, or events some member
   * has not been sent. Exactly the rooms in the hub's list of active rooms.
   */
  get active(): boolean {
    return this.pass !== null || this.log.length > 0;
  }

  /** Index one past the newest event. */
  get logEnd(): number {
    return this.logStart + this.log.length;
  }
}

/**
 * Where chat messages get their seq when that is not this process: several
 * instances share rooms through it (`redis_bus.ts`). The hub hands it what
 * its members send, and it hands back, through {@link Hub.deliver}, every
 * message of the rooms it was asked to admit, in seq order, those of this
 * instance's members included. Without a relay the hub numbers messages
 * itself and nothing on its path changes.
 */
export interface Relay {
  /**
   * Calls `join` once the room's history (the hub's history store) is ready
   * to welcome a member after `since`, or `refuse` when it cannot be made so.
   */
  admit(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
    join: () => void,
    refuse: () => void,
  ): void;
  /** Sequences and spreads a message; tells `sender` when it could not. */
  publish(room: string, draft: Omit<ChatRecord, "seq">, sender: Member): void;
  /** The room has no member here any more. */
  vacated(room: string): void;
  /** Names of the room's members on other instances. */
  elsewhere(room: string): readonly string[];
  /**
   * Scrollback from the shared history: up to `limit` records before seq
   * `before`, oldest first; rejects when it cannot be read.
   */
  before(room: string, before: number, limit: number): Promise<HistoryPage>;
  /** A member here joined, left or changed name. */
  presence(room: string, member: Member, event: MemberEvent): void;
}

/** A change in a room's membership, here or (through a relay) elsewhere. */
export type MemberEvent =
  | { kind: "join" | "leave"; name: string }
  | { kind: "nick"; from: string; name: string };

/** Settings the hub enforces. */
export interface HubOptions {
  /** Unsent bytes a member may have before it is evicted. */
  maxBufferedBytes: number;
  /** Where chat messages are kept for joins and reconnects. */
  history: HistoryStore;
  /** Counters the hub bumps. */
  metrics: Metrics;
  /** Where seqs come from when not from this hub; see {@link Relay}. */
  relay?: Relay;
}

/** Owns every room and decides who receives what, in which order. */
export class Hub {
  readonly #rooms = new Map<string, Room>();
  readonly #opts: HubOptions;
  #activeRooms: Room[] = [];
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
   * suffix. With a relay, this waits until the relay has the room ready.
   */
  join(
    member: Member,
    roomName: string,
    since?: number,
    epoch?: string,
  ): void {
    const relay = this.#opts.relay;
    if (!relay) {
      this.#join(member, roomName, since, epoch);
      return;
    }
    relay.admit(roomName, since, epoch, () => {
      // The socket may have closed, or been let go, while the relay loaded
      // the room.
      if (!member.live || this.#stopped) {
        if (!this.#rooms.has(roomName)) relay.vacated(roomName);
        return;
      }
      this.#join(member, roomName, since, epoch);
    }, () => {
      if (!this.#rooms.has(roomName)) relay.vacated(roomName);
      member.close(UNAVAILABLE, "chat unavailable, try again later");
    });
  }

  #join(
    member: Member,
    roomName: string,
    since: number | undefined,
    epoch: string | undefined,
  ): void {
    // The welcome's history must hold only stored records.
    this.#commit();
    let room = this.#rooms.get(roomName);
    if (!room) {
      room = new Room(roomName, this.#opts.history.lastSeq(roomName));
      this.#rooms.set(roomName, room);
    }
    const known = member.user === undefined
      ? undefined
      : room.users.get(member.user);
    if (known) {
      known.sockets++;
      member.name = known.name;
    } else {
      member.name = uniqueName(room, member.name);
      room.names.set(member.name, member);
      if (member.user !== undefined) {
        room.users.set(member.user, { name: member.name, sockets: 1 });
      }
    }
    member.room = room;
    member.cursor = room.logEnd;
    room.members.add(member);
    const count = this.#count(room);
    if (member.json) {
      room.jsonMembers++;
      // Everything accepted so far comes as history; the member's cursor
      // starts at the log's end, so nothing arrives twice.
      const slice = this.#opts.history.read(room.name, since, epoch);
      this.sendTo(
        member,
        encodeWelcome({
          type: "welcome",
          you: member.name,
          room: room.name,
          members: count > LARGE_ROOM ? [member.name] : this.#names(room),
          memberCount: count,
          history: slice.records,
          gap: slice.gap,
          seq: room.seq,
          epoch: slice.epoch,
        }),
      );
      // Missed records beyond the welcome's window, before any live event:
      // the outbox is cut into frames like the log.
      for (const rec of slice.rest) {
        this.sendTo(member, encodeChat(room.name, rec));
      }
    }
    if (!known) {
      if (count <= LARGE_ROOM) {
        this.#announce(room, encodeMembership("join", member.name, Date.now()));
      }
      this.#opts.relay?.presence(room.name, member, {
        kind: "join",
        name: member.name,
      });
    }
    member.joined();
  }

  /** Removes a member from its room; the others hear a `leave`. Idempotent. */
  leave(member: Member): void {
    const room = member.room;
    if (!room) return;
    member.room = null;
    member.outbox = null;
    room.members.delete(member);
    if (member.json) room.jsonMembers--;
    if (this.#otherSocketStays(room, member)) return;
    room.names.delete(member.name);
    const relay = this.#opts.relay;
    relay?.presence(room.name, member, { kind: "leave", name: member.name });
    if (room.members.size === 0) {
      this.#rooms.delete(room.name);
      relay?.vacated(room.name);
      return;
    }
    if (this.#count(room) >= LARGE_ROOM) return;
    this.#announce(room, encodeMembership("leave", member.name, Date.now()));
  }

  /**
   * Whether the leaving member's user still has another socket in the room:
   * then the person stays, under the same name, and nobody hears a leave.
   */
  #otherSocketStays(room: Room, member: Member): boolean {
    if (member.user === undefined) return false;
    const known = room.users.get(member.user);
    if (!known) return false;
    if (--known.sockets === 0) {
      room.users.delete(member.user);
      return false;
    }
    if (room.names.get(member.name) === member) {
      for (const other of room.members) {
        if (other.user === member.user) {
          room.names.set(member.name, other);
          break;
        }
      }
    }
    return true;
  }

  /** Accepts a chat message from a member: it gets the room's next seq. */
  publish(member: Member, text: string): void {
    const room = member.room;
    if (!room) return;
    const relay = this.#opts.relay;
    if (relay) {
      relay.publish(
        room.name,
        { from: member.name, time: Date.now(), text },
        member,
      );
      return;
    }
    const rec: ChatRecord = {
      seq: room.seq + 1,
      from: member.name,
      time: Date.now(),
      text,
    };
    this.#opts.metrics.messagesReceived++;
    try {
      this.#opts.history.append(room.name, rec);
    } catch (err) {
      // A durable store that had to read the room back from a failing disk.
      if (!(err instanceof HistoryUnavailable)) throw err;
      this.#opts.metrics.messagesNotStored++;
      this.#tellNotStored(member);
      return;
    }
    room.seq = rec.seq;
    this.#enqueue(room, {
      plain: normalizePlain(text),
      rec,
      json: null,
      sender: member,
    });
  }

  /**
   * Answers a scrollback request: up to `limit` messages before seq
   * `before` (the newest when absent), oldest first.
   */
  scrollback(member: Member, before: number | undefined, limit: number): void {
    const room = member.room;
    if (!room) return;
    // Never past what this member was delivered: the rest comes live.
    const at = Math.min(before ?? Infinity, room.seq + 1);
    if (this.#opts.relay) {
      this.#scrollbackRelayed(this.#opts.relay, member, room, at, limit);
      return;
    }
    this.#commit();
    try {
      const page = this.#opts.history.before(room.name, at, limit);
      this.sendTo(member, encodeHistory(room.name, page));
    } catch (err) {
      if (!(err instanceof HistoryUnavailable)) throw err;
      this.sendError(member, "history_unavailable", err.message);
    }
  }

  /**
   * Scrollback through the relay: a round trip to the shared history, whose
   * answer joins the member's own lines like any other reply.
   */
  #scrollbackRelayed(
    relay: Relay,
    member: Member,
    room: Room,
    before: number,
    limit: number,
  ): void {
    relay.before(room.name, before, limit).then((page) => {
      // The member may have left while the relay read.
      if (member.room === room) {
        this.sendTo(member, encodeHistory(room.name, page));
      }
    }, () => {
      // The relay has logged why.
      this.#opts.metrics.historyReadFailures++;
      if (member.room !== room) return;
      this.sendError(
        member,
        "history_unavailable",
        "older messages cannot be read now; try again",
      );
    });
  }

  /**
   * Accepts a message its relay sequenced (the next seq of the room), as
   * {@link publish} does one it numbered. A room whose first member is
   * still being admitted has only its history to extend.
   */
  deliver(roomName: string, rec: ChatRecord): void {
    const room = this.#rooms.get(roomName);
    if (room) {
      this.#accept(room, rec);
    } else {
      this.#opts.history.append(roomName, rec);
    }
  }

  /**
   * The room's numbering started again under `epoch` (its relay lost its
   * state): JSON members are told, and seqs go on from `seq`.
   */
  renumber(roomName: string, epoch: string, seq: number): void {
    const room = this.#rooms.get(roomName);
    if (!room) return;
    room.seq = seq;
    this.#announce(room, encodeEpoch(room.name, epoch, seq));
  }

  #accept(room: Room, rec: ChatRecord): void {
    room.seq = rec.seq;
    this.#opts.history.append(room.name, rec);
    this.#enqueue(room, {
      plain: normalizePlain(rec.text),
      rec,
      json: null,
      sender: null, // the relay stored it before anyone was sent it
    });
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
    this.#opts.relay?.presence(room.name, member, {
      kind: "nick",
      from: old,
      name,
    });
  }

  /**
   * A member of another instance joined, left or changed name (news from
   * the relay, whose list of names elsewhere already has the change):
   * announced here under the same large-room rule as local changes.
   */
  remote(roomName: string, event: MemberEvent): void {
    const room = this.#rooms.get(roomName);
    if (!room) return;
    const now = Date.now();
    const count = this.#count(room);
    if (event.kind === "nick") {
      this.#announce(room, encodeNick(event.from, event.name, now));
    } else if (
      event.kind === "join" ? count <= LARGE_ROOM : count < LARGE_ROOM
    ) {
      this.#announce(room, encodeMembership(event.kind, event.name, now));
    }
  }

  /** People in the room on every instance (a user's sockets count once). */
  #count(room: Room): number {
    const relay = this.#opts.relay;
    return room.names.size + (relay ? relay.elsewhere(room.name).length : 0);
  }

  /** Names of the room's members on every instance. */
  #names(room: Room): string[] {
    const names = [...room.names.keys()];
    const relay = this.#opts.relay;
    return relay ? names.concat(relay.elsewhere(room.name)) : names;
  }

  /** Sends a member the room's member list. */
  who(member: Member): void {
    const room = member.room;
    if (!room) return;
    this.sendTo(member, encodePresence(room.name, this.#names(room)));
  }

  /** Sends a member an error message (JSON members only). */
  sendError(member: Member, code: ErrorCode, message: string): void {
    if (member.json) this.sendTo(member, encodeError(code, message));
  }

  /**
   * Queues a line for one member; it goes out in the next turn, after the
   * room events already queued and before those queued later.
   */
  sendTo(member: Member, line: string): void {
    const room = member.room;
    if (!room) return;
    const own: OwnLine = { text: line, after: room.logEnd };
    if (member.outbox) {
      member.outbox.push(own);
      return;
    }
    member.outbox = [own];
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
      this.#commit();
      this.#visit(member.room, member);
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
    this.#enqueue(room, { plain: null, rec: null, json, sender: null });
  }

  /**
   * Stores what was accepted since the last call; must precede every send.
   * What could not be stored is taken back before anyone has it.
   */
  #commit(): void {
    const unstored = this.#opts.history.commit();
    if (unstored !== null) this.#takeBack(unstored);
  }

  /**
   * Removes records that were not stored from their rooms' logs, rolls the
   * rooms' seqs back, and tells each sender. No member has been sent them:
   * they arrived after the last commit, and every send follows a commit, so
   * every cursor and pass is before them.
   */
  #takeBack(unstored: Unstored): void {
    const senders = new Set<Member>();
    for (const [name, first] of unstored) {
      const room = this.#rooms.get(name);
      if (!room) continue; // everyone left; the events went with the room
      room.seq = first - 1;
      room.log = room.log.filter((ev) => {
        if (ev.rec === null || ev.rec.seq < first) return true;
        if (ev.sender) senders.add(ev.sender);
        return false;
      });
      room.batches.clear();
      room.batchEnd = -1;
    }
    for (const member of senders) this.#tellNotStored(member);
  }

  /** Tells a sender that its message was delivered to nobody. */
  #tellNotStored(member: Member): void {
    if (member.json) {
      this.sendError(
        member,
        "not_stored",
        "message not delivered: the server could not store it; try again",
      );
    } else {
      this.sendTo(member, PLAIN_NOT_STORED);
    }
  }

  #enqueue(room: Room, event: LogEvent): void {
    const wasIdle = !room.active;
    room.log.push(event);
    if (wasIdle) {
      this.#activeRooms.push(room);
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
    this.#timer = setImmediate(this.#turn);
  }

  #turn = (): void => {
    this.#timer = null;
    this.#commit();
    let budget = SENDS_PER_TURN;
    const members = this.#dirtyMembers;
    this.#dirtyMembers = [];
    for (const member of members) {
      if (member.outbox && member.room) {
        budget -= this.#visit(member.room, member);
      }
    }
    // Rooms the budget does not reach keep their place at the front; rooms
    // it reached and that still have work go to the back.
    const rooms = this.#activeRooms;
    this.#activeRooms = [];
    const again: Room[] = [];
    for (const room of rooms) {
      if (budget <= 0) {
        this.#activeRooms.push(room);
        continue;
      }
      budget = this.#advance(room, budget);
      if (room.active) again.push(room);
    }
    this.#activeRooms.push(...again);
    if (this.#activeRooms.length > 0) this.#schedule();
  };

  /**
   * Runs the room's pass, starting one if none is under way, until it ends
   * or `budget` sends are made. Returns the budget left.
   */
  #advance(room: Room, budget: number): number {
    if (room.pass === null) {
      room.pass = room.members.values();
      room.passEnd = room.logEnd;
    }
    while (budget > 0) {
      const next = room.pass.next();
      if (next.done) {
        this.#endPass(room);
        return budget;
      }
      budget -= this.#visit(room, next.value);
    }
    return budget;
  }

  /**
   * Every member has now been sent the log up to the pass's start (those
   * who joined since started past it), so that part is dropped. Events that
   * arrived during the pass keep the room active for another one.
   */
  #endPass(room: Room): void {
    room.pass = null;
    room.log = room.log.slice(room.passEnd - room.logStart);
    room.logStart = room.passEnd;
    room.batches.clear();
    room.batchEnd = -1;
  }

  /**
   * Sends a member the log it has not had, with its own lines in their
   * place, as one frame (more only when that is over {@link FRAME_CHARS}).
   * Returns the number of frames sent.
   */
  #visit(room: Room, member: Member): number {
    const end = room.logEnd;
    const own = member.outbox;
    member.outbox = null;
    const from = member.cursor;
    member.cursor = end;
    if (own === null) {
      if (from === end) return 0;
      // The hot path: the shared batch as it is, nothing allocated.
      const batch = this.#batch(room, from, end);
      return member.json
        ? this.#send(member, batch.json, batch.jsonBytes, batch.jsonMessages)
        : this.#send(
          member,
          batch.plain,
          batch.plainBytes,
          batch.plainMessages,
        );
    }
    const out = this.#interleave(room, member, own, from, end);
    return this.#send(member, out.frames, out.bytes, out.messages);
  }

  /**
   * The log from `from` to `end` with `own` lines each where it was decided.
   * In the usual cases (lines decided while the member was up to date, or
   * after everything it has not had) the log part is the shared batch.
   */
  #interleave(
    room: Room,
    member: Member,
    own: OwnLine[],
    from: number,
    end: number,
  ): Frames {
    // Shared frames are already as full as the cap allows, so at most their
    // neighbours join them; each own line is a piece of its own, so a long
    // run of them (a catch-up after the welcome) is cut into frames like
    // the log is.
    const out = new FrameBuilder();
    let bytes = 0;
    let messages = 0;
    const addLog = (to: number) => {
      if (to <= from) return;
      const part = this.#slice(room, member, from, to);
      for (const frame of part.frames) out.add(frame);
      bytes += part.bytes;
      messages += part.messages;
      from = to;
    };
    for (const line of own) {
      addLog(line.after);
      out.add(line.text);
      bytes += utf8Length(line.text);
    }
    addLog(end);
    const frames = out.frames();
    bytes += out.joins;
    return { frames, bytes, messages };
  }

  /** The member's format of the log from `from` to `to`. */
  #slice(room: Room, member: Member, from: number, to: number): Frames {
    const batch = this.#batch(room, from, to);
    return member.json
      ? {
        frames: batch.json,
        bytes: batch.jsonBytes,
        messages: batch.jsonMessages,
      }
      : {
        frames: batch.plain,
        bytes: batch.plainBytes,
        messages: batch.plainMessages,
      };
  }

  /**
   * The frames for the log from `from` to `to`. Those that run to the log's
   * end are built once and shared by every member visited with the same
   * cursor while the log stays as it is; a part that stops short (before a
   * member's own line) is built for that member alone.
   */
  #batch(room: Room, from: number, to: number): Batch {
    const end = room.logEnd;
    if (to === end) {
      if (room.batchEnd !== end) {
        room.batches.clear();
        room.batchEnd = end;
      }
      const cached = room.batches.get(from);
      if (cached) return cached;
    }

    // Each format only when someone speaks it: a JSON-only room would
    // otherwise build and measure plain frames nobody is sent.
    const withJson = room.jsonMembers > 0;
    const withPlain = room.members.size > room.jsonMembers;
    const plain = new FrameBuilder();
    let plainMessages = 0;
    const json = new FrameBuilder();
    let jsonMessages = 0;
    for (let i = from - room.logStart; i < to - room.logStart; i++) {
      const ev = room.log[i];
      if (withPlain && ev.plain !== null && ev.plain !== "") {
        plain.add(ev.plain);
        plainMessages++;
      }
      if (withJson) {
        json.add(ev.json ??= encodeChat(room.name, ev.rec!));
        if (ev.rec !== null) jsonMessages++;
      }
    }
    const plainFrames = plain.frames();
    const jsonFrames = json.frames();
    const batch: Batch = {
      plain: plainFrames,
      plainBytes: bytesOf(plainFrames),
      plainMessages,
      json: jsonFrames,
      jsonBytes: bytesOf(jsonFrames),
      jsonMessages,
    };
    if (to === end) room.batches.set(from, batch);
    return batch;
  }

  /**
   * Sends `frames` (`bytes` of payload, `messages` chat messages) unless the
   * member is already too far behind or the hub has stopped. Returns the
   * number of frames sent.
   */
  #send(
    member: Member,
    frames: readonly string[],
    bytes: number,
    messages: number,
  ): number {
    if (frames.length === 0 || this.#stopped) return 0;
    const socket = member.socket;
    if (socket.readyState !== WebSocket.OPEN) return 0;
    // Judged once per visit, before its first frame. Deno writes nothing
    // until the turn ends, so the frames of one visit would count against
    // each other: a member reading as fast as it can would be evicted for a
    // burst that arrived in one read. What an evicted member can pin stays
    // the limit plus one visit's frames.
    // Payload and Deno's per-frame overhead: frames of 64 bytes queued one
    // per visit pinned seven times the limit by payload alone.
    if (member.inFlight.exceeds(socket, this.#opts.maxBufferedBytes)) {
      this.evict(member, "slow_consumer", 1008, "slow consumer");
      return 0;
    }
    for (const frame of frames) socket.send(frame);
    member.inFlight.record(bytes, frames.length);
    const metrics = this.#opts.metrics;
    metrics.framesOut += frames.length;
    metrics.bytesOut += bytes;
    metrics.messagesDelivered += messages;
    return frames.length;
  }
}

/** Close code "try again later": the relay could not load the room. */
const UNAVAILABLE = 1013;

/**
 * Joins lines with `\n` into frames of at most {@link FRAME_CHARS}: the
 * log's lines into shared frames, and a member's own lines with the frames
 * next to them.
 */
class FrameBuilder {
  readonly #frames: string[] = [];
  #current = "";
  #lines = 0;
  #joins = 0;

  /** Newlines added between lines so far: bytes the lines alone do not count. */
  get joins(): number {
    return this.#joins;
  }

  /** Appends a line; a line longer than the limit is a frame of its own. */
  add(line: string): void {
    if (this.#lines === 0) {
      this.#current = line;
    } else if (this.#current.length + 1 + line.length <= FRAME_CHARS) {
      this.#current += "\n" + line;
      this.#joins++;
    } else {
      this.#frames.push(this.#current);
      this.#current = line;
    }
    this.#lines++;
  }

  /** The frames (none when no line was added); call once, after the last line. */
  frames(): string[] {
    if (this.#lines > 0) this.#frames.push(this.#current);
    this.#current = "";
    this.#lines = 0;
    return this.#frames;
  }
}

/** UTF-8 bytes of `frames` together. */
function bytesOf(frames: readonly string[]): number {
  let bytes = 0;
  for (const frame of frames) bytes += utf8Length(frame);
  return bytes;
}

/** `name`, or `name-2`, `name-3`… whichever is free in the room. */
function uniqueName(room: Room, name: string): string {
  if (!room.names.has(name)) return name;
  for (let i = 2;; i++) {
    const candidate = `${name.slice(0, 28)}-${i}`;
    if (!room.names.has(candidate)) return candidate;
  }
}
