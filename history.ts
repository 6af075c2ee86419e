/**
 * Room history: the last N chat messages of every room, for the welcome on
 * join and for gap-free reconnects (`?since=SEQ`). The hub talks to the
 * {@link HistoryStore} interface so that a durable store can replace the
 * in-memory one without touching the broadcast path.
 *
 * @module
 */

import type { ChatRecord } from "./protocol.ts";

/** What a reconnecting client gets: the records it missed, and whether some are gone. */
export interface HistorySlice {
  /** Records after `since`, oldest first. */
  records: ChatRecord[];
  /** True when records after `since` have already been dropped. */
  gap: boolean;
}

/** Where rooms keep their recent messages. */
export interface HistoryStore {
  /** Stores a record; seq must be the room's last seq plus one. */
  append(room: string, rec: ChatRecord): void;
  /** The seq of the room's newest record ever stored, 0 for none. */
  lastSeq(room: string): number;
  /**
   * Records with `since < seq <= upTo`. Without `since`, every record kept
   * up to `upTo`. A `since` beyond the room's last seq (a client from an
   * earlier life of the room) gets everything kept, flagged as a gap.
   */
  read(room: string, since: number | undefined, upTo: number): HistorySlice;
  /** Records held across all rooms. */
  size(): number;
}

/** Keeps the last `capacity` records of each room in memory. */
export class MemoryHistory implements HistoryStore {
  readonly #capacity: number;
  readonly #rooms = new Map<string, { records: ChatRecord[]; last: number }>();
  #size = 0;

  /** @param capacity records kept per room; 0 keeps none. */
  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  append(room: string, rec: ChatRecord): void {
    let entry = this.#rooms.get(room);
    if (!entry) {
      entry = { records: [], last: 0 };
      this.#rooms.set(room, entry);
    }
    entry.last = rec.seq;
    if (this.#capacity === 0) return;
    entry.records.push(rec);
    this.#size++;
    if (entry.records.length > this.#capacity) {
      entry.records.shift();
      this.#size--;
    }
  }

  lastSeq(room: string): number {
    return this.#rooms.get(room)?.last ?? 0;
  }

  read(room: string, since: number | undefined, upTo: number): HistorySlice {
    const entry = this.#rooms.get(room);
    if (!entry) return { records: [], gap: since !== undefined && since > 0 };
    return sliceAfter(entry.records, entry.last, since, upTo);
  }

  size(): number {
    return this.#size;
  }
}

/**
 * The shared rule of every store: which of the `kept` records (oldest first,
 * contiguous, newest seq `last`) a reader after `since` gets, and whether it
 * missed some for good.
 */
export function sliceAfter(
  kept: readonly ChatRecord[],
  last: number,
  since: number | undefined,
  upTo: number,
): HistorySlice {
  const upToKept = kept.filter((r) => r.seq <= upTo);
  if (since === undefined) return { records: upToKept, gap: false };
  if (since > last) return { records: upToKept, gap: true };
  const records = upToKept.filter((r) => r.seq > since);
  const oldest = kept.length > 0 ? kept[0].seq : last + 1;
  return { records, gap: since < oldest - 1 && since < upTo };
}
