/**
 * The history store of an instance whose rooms are sequenced elsewhere
 * (`--redis`): for each room with members here, the newest records it
 * delivered, under the epoch the relay gave it. The relay fills it when a
 * room is loaded; the hub appends to it as it accepts each delivered
 * record, so a welcome built from it ends exactly where the joiner's live
 * delivery begins.
 *
 * @module
 */

import {
  firstSeq,
  type HistoryPage,
  type HistorySlice,
  type HistoryStore,
  pageRange,
  sliceAfter,
  type Unstored,
} from "./history.ts";
import type { ChatRecord } from "./protocol.ts";

/** One room's recent records, contiguous and oldest first. */
interface Window {
  records: ChatRecord[];
  last: number;
  epoch: string;
}

/** Recent records per loaded room, `capacity` at most each. */
export class RelayWindow implements HistoryStore {
  readonly #capacity: number;
  readonly #rooms = new Map<string, Window>();
  #size = 0;

  /** Keeps `capacity` records per room (0 keeps none). */
  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Starts the room's window afresh: `records` (oldest first) up to `last`. */
  reset(room: string, epoch: string, last: number, records: ChatRecord[]) {
    this.drop(room);
    const kept = records.slice(Math.max(0, records.length - this.#capacity));
    this.#rooms.set(room, { records: kept, last, epoch });
    this.#size += kept.length;
  }

  /**
   * Puts `older` (oldest first) in front of the room's records when they
   * end right where the window begins, so that a welcome may reach further
   * back than the window keeps; the next append trims it again. Returns
   * whether they fitted.
   */
  prepend(room: string, older: ChatRecord[]): boolean {
    const w = this.#rooms.get(room);
    if (!w || older.length === 0) return false;
    if (older[older.length - 1].seq !== firstSeq(w.records, w.last) - 1) {
      return false;
    }
    w.records = [...older, ...w.records];
    this.#size += older.length;
    return true;
  }

  /** Forgets the room (its last member here left). */
  drop(room: string): void {
    const w = this.#rooms.get(room);
    if (!w) return;
    this.#size -= w.records.length;
    this.#rooms.delete(room);
  }

  /** The room's epoch, "" when the room is not loaded. */
  epoch(room: string): string {
    return this.#rooms.get(room)?.epoch ?? "";
  }

  /** Seq of the room's oldest record kept, or one past its last when none. */
  oldest(room: string): number {
    const w = this.#rooms.get(room);
    return w ? firstSeq(w.records, w.last) : 0;
  }

  append(room: string, rec: ChatRecord): void {
    const w = this.#rooms.get(room);
    if (!w) return;
    w.last = rec.seq;
    if (this.#capacity === 0) return;
    w.records.push(rec);
    this.#size++;
    const excess = w.records.length - this.#capacity;
    if (excess > 0) {
      w.records.splice(0, excess);
      this.#size -= excess;
    }
  }

  lastSeq(room: string): number {
    return this.#rooms.get(room)?.last ?? 0;
  }

  read(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
  ): HistorySlice {
    const w = this.#rooms.get(room) ?? { records: [], last: 0, epoch: "" };
    const sameLife = epoch === undefined || epoch === w.epoch;
    const { records, gap } = sliceAfter(
      w.records,
      w.last,
      sameLife ? since : -1,
    );
    // Records prepended for a far-behind joiner beyond the window follow
    // the welcome as messages, so that a welcome stays small.
    return {
      records: records.slice(0, this.#capacity),
      rest: records.slice(this.#capacity),
      gap,
      epoch: w.epoch,
    };
  }

  /**
   * The window's part of a scrollback page; the hub asks the relay
   * (`RedisBus.before`) instead, which reads the whole stream. `more` says
   * whether older records may exist beyond the window.
   */
  before(room: string, before: number, limit: number): HistoryPage {
    const w = this.#rooms.get(room) ?? { records: [], last: 0, epoch: "" };
    const oldest = firstSeq(w.records, w.last);
    const { from, to } = pageRange(oldest, w.last, before, limit);
    return {
      epoch: w.epoch,
      records: w.records.slice(from - oldest, Math.max(0, to - oldest)),
      more: from > 1,
    };
  }

  /** Redis stored every record before it was delivered: nothing to do. */
  commit(): Unstored | null {
    return null;
  }

  size(): number {
    return this.#size;
  }

  /** Nothing on disk here; the stream's length is Redis's business. */
  stored(): number | null {
    return null;
  }

  /** Nothing to release: the relay owns the connections. */
  close(): void {}
}
