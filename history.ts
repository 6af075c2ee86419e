/**
 * Room history: the last N chat messages of every room, for the welcome on
 * join and for gap-free reconnects (`?since=SEQ`). The hub talks to the
 * {@link HistoryStore} interface so that a durable store can replace the
 * in-memory one without touching the broadcast path.
 *
 * @module
 */

import type { ChatRecord } from "./protocol.ts";

/** What a joining client gets: the records it missed, and whether some are gone. */
export interface HistorySlice {
  /**
   * Records after `since` (or the newest kept), oldest first; at most the
   * store's in-memory window, so that a welcome stays small.
   */
  records: ChatRecord[];
  /**
   * Missed records that follow `records` when the client missed more than
   * the window (only a durable store keeps more), oldest first. Sent as
   * `message` objects after the welcome, before any live event.
   */
  rest: ChatRecord[];
  /** True when records the client asked for are no longer available. */
  gap: boolean;
  /**
   * Identifies this life of the room's numbering. A client that reconnects
   * with another epoch (the server restarted without `--data`, or the room's
   * history was dropped) cannot trust its `since`.
   */
  epoch: string;
}

/** One page of scrollback: records before a seq, oldest first. */
export interface HistoryPage {
  /** The room's epoch, so the client can tell whether its seqs still apply. */
  epoch: string;
  /** Up to the page's limit of records, contiguous, oldest first. */
  records: ChatRecord[];
  /** False when nothing older is kept: the beginning of the room's history. */
  more: boolean;
}

/**
 * Records of the last turn that could not be stored: room name → the first
 * seq not stored. Every record of the room from that seq on is gone.
 */
export type Unstored = Map<string, number>;

/**
 * A read of stored history failed (a durable store's disk error). The store
 * has logged and counted it; the caller tells the client.
 */
export class HistoryUnavailable extends Error {
  /** Distinguishes it from other errors in logs. */
  override name = "HistoryUnavailable";
}

/**
 * Where rooms keep their messages. The hub appends each accepted record,
 * then, at the start of its turn and before it sends anything, calls
 * {@link HistoryStore.commit}: a durable store writes the turn's records
 * there, so nothing is delivered that is not stored. Reads see committed
 * records (the hub commits before it reads for a client).
 */
export interface HistoryStore {
  /** Stores a record; seq must be the room's last seq plus one. */
  append(room: string, rec: ChatRecord): void;
  /**
   * Makes every record appended since the last call durable, in one batch.
   * Returns null when all were stored (or the store is memory only);
   * otherwise the rooms whose records were lost: the store has already
   * forgotten them (its last seq is back before them), logged and counted
   * the failure.
   */
  commit(): Unstored | null;
  /** The seq of the room's newest record, 0 for none. */
  lastSeq(room: string): number;
  /**
   * Records with `seq > since`; without `since`, the newest kept. When
   * `epoch` is not the room's, or `since` is beyond the room's last seq,
   * the client's position is meaningless: it gets the newest kept, flagged
   * as a gap.
   */
  read(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
  ): HistorySlice;
  /**
   * Up to `limit` records with `seq < before`, the newest of them.
   *
   * @throws {HistoryUnavailable} when stored history cannot be read.
   */
  before(room: string, before: number, limit: number): HistoryPage;
  /** Records held in memory across all rooms. */
  size(): number;
  /** Records on disk across all rooms; null for a memory-only store. */
  stored(): number | null;
  /** Commits what is pending and releases the store; idempotent. */
  close(): void;
}

/** What a durable store knows of a room when it first comes into memory. */
export interface RoomSeed {
  /** The room's newest records, oldest first, contiguous, ending at `last`. */
  records: ChatRecord[];
  /** The room's newest seq. */
  last: number;
  /** The room's epoch. */
  epoch: string;
}

/** Bytes counted for a room's bookkeeping besides its records. */
const ROOM_OVERHEAD_BYTES = 256;
/** Bytes counted per record besides its strings. */
const RECORD_OVERHEAD_BYTES = 64;

interface RoomHistory {
  records: ChatRecord[];
  last: number;
  epoch: string;
  bytes: number;
}

/**
 * Keeps the last `capacity` records of each room in memory, and at most
 * `maxBytes` in all: rooms are cheap to create (`?room=` is any name), so
 * past the budget the least recently used rooms' histories are dropped.
 */
export class MemoryHistory implements HistoryStore {
  readonly #capacity: number;
  readonly #maxBytes: number;
  /** In least-recently-used order: every use moves a room to the end. */
  readonly #rooms = new Map<string, RoomHistory>();
  #size = 0;
  #bytes = 0;

  readonly #load: ((room: string) => RoomSeed) | null;

  /**
   * A store keeping `capacity` records per room within `maxBytes` overall.
   *
   * @param capacity records kept per room; 0 keeps none
   * @param maxBytes approximate memory budget for all rooms together
   * @param load where a room not in memory comes from (a durable store's
   *   disk); without it, a new room starts empty with a new epoch
   */
  constructor(
    capacity: number,
    maxBytes: number = 64 << 20,
    load: ((room: string) => RoomSeed) | null = null,
  ) {
    this.#capacity = capacity;
    this.#maxBytes = maxBytes;
    this.#load = load;
  }

  /** The window's size per room. */
  get capacity(): number {
    return this.#capacity;
  }

  append(room: string, rec: ChatRecord): void {
    const entry = this.#use(room);
    entry.last = rec.seq;
    if (this.#capacity > 0) {
      entry.records.push(rec);
      this.#size++;
      this.#account(entry, recordBytes(rec));
      if (entry.records.length > this.#capacity) {
        this.#size--;
        this.#account(entry, -recordBytes(entry.records.shift()!));
      }
    }
    this.#trim(room);
  }

  /** Memory only: nothing to make durable. */
  commit(): Unstored | null {
    return null;
  }

  lastSeq(room: string): number {
    if (this.#load) return this.#use(room).last;
    return this.#rooms.get(room)?.last ?? 0;
  }

  /** The room's epoch (loading the room if needed). */
  epoch(room: string): string {
    return this.#use(room).epoch;
  }

  /** The room's records in memory, oldest first; do not modify. */
  window(room: string): readonly ChatRecord[] {
    return this.#use(room).records;
  }

  /** Drops the room from memory; with a loader, it is read again when used. */
  forget(room: string): void {
    const entry = this.#rooms.get(room);
    if (entry) this.#drop(room, entry);
  }

  read(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
  ): HistorySlice {
    const entry = this.#use(room);
    this.#trim(room);
    const sameLife = epoch === undefined || epoch === entry.epoch;
    return {
      ...sliceAfter(entry.records, entry.last, sameLife ? since : -1),
      rest: [],
      epoch: entry.epoch,
    };
  }

  before(room: string, before: number, limit: number): HistoryPage {
    const entry = this.#use(room);
    this.#trim(room);
    const oldest = firstSeq(entry.records, entry.last);
    const { from, to, more } = pageRange(oldest, entry.last, before, limit);
    return {
      epoch: entry.epoch,
      records: entry.records.slice(from - oldest, Math.max(0, to - oldest)),
      more,
    };
  }

  size(): number {
    return this.#size;
  }

  /** Memory only: nothing on disk. */
  stored(): number | null {
    return null;
  }

  /** Nothing to release. */
  close(): void {}

  /** The room's entry, created if needed and marked most recently used. */
  #use(room: string): RoomHistory {
    let entry = this.#rooms.get(room);
    if (entry) {
      this.#rooms.delete(room);
    } else {
      const seed = this.#load?.(room) ??
        { records: [], last: 0, epoch: newEpoch() };
      entry = { ...seed, bytes: 0 };
      this.#account(entry, ROOM_OVERHEAD_BYTES);
      for (const rec of seed.records) this.#account(entry, recordBytes(rec));
      this.#size += seed.records.length;
    }
    this.#rooms.set(room, entry);
    return entry;
  }

  #account(entry: RoomHistory, bytes: number): void {
    entry.bytes += bytes;
    this.#bytes += bytes;
  }

  /** Drops least recently used rooms (never `keep`) until within budget. */
  #trim(keep: string): void {
    for (const [room, entry] of this.#rooms) {
      if (this.#bytes <= this.#maxBytes) return;
      if (room === keep) continue;
      this.#drop(room, entry);
    }
  }

  /** Removes a room from memory, and what it counted. */
  #drop(room: string, entry: RoomHistory): void {
    this.#rooms.delete(room);
    this.#bytes -= entry.bytes;
    this.#size -= entry.records.length;
  }
}

function recordBytes(rec: ChatRecord): number {
  return RECORD_OVERHEAD_BYTES + 2 * (rec.text.length + rec.from.length);
}

/** A fresh epoch: 8 hex digits, different for every life of a room. */
export function newEpoch(): string {
  return crypto.randomUUID().slice(0, 8);
}

/**
 * Where the `kept` records (oldest first, contiguous, newest seq `last`)
 * begin: the oldest one's seq, or one past `last` when none are kept, so
 * that "everything from here on is kept" holds either way.
 */
export function firstSeq(kept: readonly ChatRecord[], last: number): number {
  return kept.length > 0 ? kept[0].seq : last + 1;
}

/**
 * The shared rule of every store: which of the `kept` records (oldest first,
 * contiguous, newest seq `last`) a reader after `since` gets, and whether it
 * missed some for good. A negative `since` means "position unknown".
 */
export function sliceAfter(
  kept: readonly ChatRecord[],
  last: number,
  since: number | undefined,
): { records: ChatRecord[]; gap: boolean } {
  if (since === undefined) return { records: [...kept], gap: false };
  if (since < 0 || since > last) return { records: [...kept], gap: true };
  const records = kept.filter((r) => r.seq > since);
  return { records, gap: since < firstSeq(kept, last) - 1 };
}

/**
 * The shared rule of scrollback: the seqs `[from, to)` of the page of up to
 * `limit` records before `before`, when the records kept run from `oldest`
 * to `last` without gaps; `more` says whether older ones are kept.
 */
export function pageRange(
  oldest: number,
  last: number,
  before: number,
  limit: number,
): { from: number; to: number; more: boolean } {
  const to = Math.max(oldest, Math.min(before, last + 1));
  const from = Math.max(oldest, to - limit);
  return { from, to, more: from > oldest };
}
