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
  /** Records after `since` (or all kept), oldest first. */
  records: ChatRecord[];
  /** True when records the client asked for are no longer available. */
  gap: boolean;
  /**
   * Identifies this life of the room's numbering. A client that reconnects
   * with another epoch (the server restarted without `--data`, or the room's
   * history was dropped) cannot trust its `since`.
   */
  epoch: string;
}

/** Where rooms keep their recent messages. */
export interface HistoryStore {
  /** Stores a record; seq must be the room's last seq plus one. */
  append(room: string, rec: ChatRecord): void;
  /** The seq of the room's newest record, 0 for none. */
  lastSeq(room: string): number;
  /**
   * Records with `seq > since`; without `since`, every record kept. When
   * `epoch` is not the room's, or `since` is beyond the room's last seq,
   * the client's position is meaningless: it gets everything kept, flagged
   * as a gap.
   */
  read(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
  ): HistorySlice;
  /** Records held across all rooms. */
  size(): number;
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

  /**
   * A store keeping `capacity` records per room within `maxBytes` overall.
   *
   * @param capacity records kept per room; 0 keeps none
   * @param maxBytes approximate memory budget for all rooms together
   */
  constructor(capacity: number, maxBytes = 64 << 20) {
    this.#capacity = capacity;
    this.#maxBytes = maxBytes;
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

  lastSeq(room: string): number {
    return this.#rooms.get(room)?.last ?? 0;
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
      epoch: entry.epoch,
    };
  }

  size(): number {
    return this.#size;
  }

  /** The room's entry, created if needed and marked most recently used. */
  #use(room: string): RoomHistory {
    let entry = this.#rooms.get(room);
    if (entry) {
      this.#rooms.delete(room);
    } else {
      entry = { records: [], last: 0, epoch: newEpoch(), bytes: 0 };
      this.#account(entry, ROOM_OVERHEAD_BYTES);
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
      this.#rooms.delete(room);
      this.#bytes -= entry.bytes;
      this.#size -= entry.records.length;
    }
  }
}

function recordBytes(rec: ChatRecord): number {
  return RECORD_OVERHEAD_BYTES + 2 * (rec.text.length + rec.from.length);
}

function newEpoch(): string {
  return crypto.randomUUID().slice(0, 8);
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
  const oldest = kept.length > 0 ? kept[0].seq : last + 1;
  return { records, gap: since < oldest - 1 };
}
