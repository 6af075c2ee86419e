/**
 * History on disk (`--data`): every room's messages, epoch and last seq in
 * an embedded SQLite database (`node:sqlite`), so that a restart, even a
 * `kill -9`, loses nothing that was delivered.
 *
 * Appends go to the room's in-memory window (the last `--history` records,
 * which serve welcomes) and to a pending batch. The hub calls
 * {@link DurableHistory.commit} at the start of its turn, before it sends
 * anything: the batch becomes one transaction, and only then are its
 * records delivered. When the transaction fails (disk full, I/O error, the
 * file gone read-only) the records are forgotten and reported back, and the
 * next commit tries again.
 *
 * Rooms come into memory when first used, from the tail of their rows: a
 * start reads one row per room, not the messages. Rooms above
 * `--history-max` rows are trimmed from the oldest end a small batch at a
 * time, each its own transaction in a later turn of the event loop, so the
 * commit that delivery waits for never includes a trim.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import {
  firstSeq,
  type HistoryPage,
  type HistorySlice,
  type HistoryStore,
  HistoryUnavailable,
  MemoryHistory,
  newEpoch,
  pageRange,
  type RoomSeed,
  type Unstored,
} from "./history.ts";
import { DataFileError, type DataSync, openHistoryDb } from "./history_db.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { ChatRecord } from "./protocol.ts";

/**
 * Rows a trim deletes in one transaction. A few hundred rows are well under
 * a millisecond; a room lowered from a million to ten thousand is brought
 * down in that many small steps between deliveries, not one long stall.
 */
export const TRIM_BATCH = 500;

/**
 * While commits keep failing, at most one log line per this many
 * milliseconds: a full disk under load fails every turn.
 */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/** Settings of a {@link DurableHistory}. */
export interface DurableHistoryOptions {
  /** The database file. */
  path: string;
  /** Records per room kept in memory (`--history`). */
  window: number;
  /** Records per room kept on disk (`--history-max`), at least 1. */
  max: number;
  /** SQLite's `synchronous` level for commits. */
  sync: DataSync;
  /** Where failures and recoveries are logged. */
  logger: Logger;
  /** Counters for write latency and failures. */
  metrics: Metrics;
}

/** Records of one room waiting for the next commit. */
interface PendingRoom {
  epoch: string;
  records: ChatRecord[];
}

/** A room's row in the `rooms` table. */
interface RoomRow {
  id: number;
  epoch: string;
  first: number;
  last: number;
}

/** A message row as read back. */
interface MessageRow {
  seq: number;
  sender: string;
  time: number;
  text: string;
}

/** The SQLite-backed {@link HistoryStore}. */
export class DurableHistory implements HistoryStore {
  readonly #db: DatabaseSync;
  readonly #max: number;
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #window: MemoryHistory;
  #pending = new Map<string, PendingRoom>();
  /** Rooms that may hold more than `max` rows on disk. */
  readonly #overfull = new Set<string>();
  #trimTimer: ReturnType<typeof setTimeout> | null = null;
  /** Rows on disk across all rooms. */
  #rows: number;
  #failing = false;
  #lastFailureLog = -Infinity;
  #closed = false;

  readonly #room: StatementSync;
  readonly #upsertRoom: StatementSync;
  readonly #insert: StatementSync;
  readonly #range: StatementSync;
  readonly #trimRows: StatementSync;
  readonly #setFirst: StatementSync;

  /**
   * Opens the database at `opts.path`, creating it when absent.
   *
   * @throws {DataFileError} when the file cannot be used.
   */
  constructor(opts: DurableHistoryOptions) {
    this.#db = openHistoryDb(opts.path, opts.sync);
    this.#max = opts.max;
    this.#logger = opts.logger;
    this.#metrics = opts.metrics;
    this.#window = new MemoryHistory(
      Math.min(opts.window, opts.max),
      undefined,
      (room) => this.#load(room),
    );
    const db = this.#db;
    this.#room = db.prepare(
      "SELECT id, epoch, first_seq AS first, last_seq AS last FROM rooms WHERE name = ?",
    );
    this.#upsertRoom = db.prepare(
      `INSERT INTO rooms (name, epoch, first_seq, last_seq) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq
       RETURNING id, first_seq AS first`,
    );
    this.#insert = db.prepare(
      "INSERT INTO messages (room, seq, sender, time, text) VALUES (?, ?, ?, ?, ?)",
    );
    this.#range = db.prepare(
      `SELECT seq, sender, time, text FROM messages
       WHERE room = ? AND seq >= ? AND seq < ? ORDER BY seq`,
    );
    this.#trimRows = db.prepare(
      "DELETE FROM messages WHERE room = ? AND seq < ?",
    );
    this.#setFirst = db.prepare("UPDATE rooms SET first_seq = ? WHERE id = ?");
    try {
      this.#rows = Number(
        db.prepare("SELECT sum(last_seq - first_seq + 1) AS n FROM rooms").get()
          ?.n ?? 0,
      );
      // Rooms over a lowered --history-max: one row each from the rooms table.
      const over = db.prepare(
        "SELECT name FROM rooms WHERE last_seq - first_seq + 1 > ?",
      ).all(this.#max);
      for (const row of over) this.#overfull.add(String(row.name));
    } catch (err) {
      db.close();
      throw new DataFileError(`cannot read ${opts.path}: ${errorText(err)}`);
    }
    this.#scheduleTrim();
  }

  append(room: string, rec: ChatRecord): void {
    this.#window.append(room, rec);
    const pending = this.#pending.get(room);
    if (pending) {
      pending.records.push(rec);
    } else {
      this.#pending.set(room, {
        epoch: this.#window.epoch(room),
        records: [rec],
      });
    }
  }

  commit(): Unstored | null {
    if (this.#pending.size === 0) return null;
    const batch = this.#pending;
    this.#pending = new Map();
    const started = performance.now();
    let count = 0;
    try {
      this.#db.exec("BEGIN");
      for (const [room, { epoch, records }] of batch) {
        const first = records[0].seq;
        const last = records[records.length - 1].seq;
        const row = this.#upsertRoom.get(room, epoch, first, last)!;
        const id = Number(row.id);
        for (const r of records) {
          this.#insert.run(id, r.seq, r.from, r.time, r.text);
        }
        count += records.length;
        if (last - Number(row.first) + 1 > this.#max) this.#overfull.add(room);
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      return this.#failed(batch, err);
    }
    this.#rows += count;
    this.#metrics.historyWrite((performance.now() - started) / 1000);
    if (this.#failing) {
      this.#failing = false;
      this.#logger.log("info", "history writes work again");
    }
    this.#scheduleTrim();
    return null;
  }

  /** Rolls back, forgets the batch's records, and says which were lost. */
  #failed(batch: Map<string, PendingRoom>, err: unknown): Unstored {
    this.#rollback();
    const unstored: Unstored = new Map();
    let lost = 0;
    for (const [room, { records }] of batch) {
      // The window held the lost records; it is read again from disk.
      this.#window.forget(room);
      unstored.set(room, records[0].seq);
      lost += records.length;
    }
    this.#metrics.historyWriteFailures++;
    this.#metrics.messagesNotStored += lost;
    const now = performance.now();
    if (
      !this.#failing || now - this.#lastFailureLog > FAILURE_LOG_INTERVAL_MS
    ) {
      this.#lastFailureLog = now;
      this.#logger.log(
        "error",
        "history write failed; messages not delivered",
        {
          error: errorText(err),
          messages: lost,
        },
      );
    }
    this.#failing = true;
    return unstored;
  }

  #rollback(): void {
    if (!this.#db.isTransaction) return;
    try {
      this.#db.exec("ROLLBACK");
    } catch (err) {
      // SQLite rolls back by itself after some I/O errors; a failed
      // ROLLBACK then leaves nothing to undo, but it is worth a line.
      this.#logger.log("warn", "history rollback failed", {
        error: errorText(err),
      });
    }
  }

  lastSeq(room: string): number {
    return this.#window.lastSeq(room);
  }

  read(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
  ): HistorySlice {
    const slice = this.#window.read(room, since, epoch);
    const last = this.#window.lastSeq(room);
    const older = since !== undefined && slice.gap &&
      slice.epoch === (epoch ?? slice.epoch) && since <= last;
    if (!older) return slice;
    // `since` is older than the window: the rest comes from disk.
    const window = slice.records;
    const windowStart = firstSeq(window, last);
    let disk: ChatRecord[];
    let oldest: number;
    try {
      const row = this.#roomRow(room);
      oldest = this.#oldestKept(row, last);
      disk = this.#rowsBetween(row, Math.max(since + 1, oldest), windowStart);
    } catch (err) {
      this.#readFailed(err);
      return slice;
    }
    const all = [...disk, ...window];
    const size = this.#window.capacity;
    return {
      records: all.slice(0, size),
      rest: all.slice(size),
      gap: since < oldest - 1,
      epoch: slice.epoch,
    };
  }

  before(room: string, before: number, limit: number): HistoryPage {
    const epoch = this.#window.epoch(room);
    const last = this.#window.lastSeq(room);
    const window = this.#window.window(room);
    const windowStart = firstSeq(window, last);
    try {
      const row = this.#roomRow(room);
      const oldest = Math.min(this.#oldestKept(row, last), windowStart);
      const { from, to, more } = pageRange(oldest, last, before, limit);
      const disk = this.#rowsBetween(row, from, Math.min(to, windowStart));
      const mem = window.slice(
        Math.max(0, from - windowStart),
        Math.max(0, to - windowStart),
      );
      return { epoch, records: [...disk, ...mem], more };
    } catch (err) {
      this.#readFailed(err);
      throw new HistoryUnavailable("stored history cannot be read now");
    }
  }

  size(): number {
    return this.#window.size();
  }

  stored(): number {
    return this.#rows;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#trimTimer !== null) clearTimeout(this.#trimTimer);
    this.#trimTimer = null;
    if (this.commit() !== null) {
      this.#logger.log("warn", "history: last messages not stored at close");
    }
    this.#db.close();
  }

  /** A room coming into memory: its row and the tail of its messages. */
  #load(room: string): RoomSeed {
    try {
      return this.#loadTail(room);
    } catch (err) {
      if (err instanceof HistoryUnavailable) throw err;
      this.#readFailed(err);
      throw new HistoryUnavailable("stored history cannot be read now");
    }
  }

  #loadTail(room: string): RoomSeed {
    const pending = this.#pending.get(room);
    const row = this.#roomRow(room);
    if (!row) {
      // A room with nothing on disk; pending records can only be there if
      // the room left memory since they were appended.
      return {
        records: pending ? [...pending.records] : [],
        last: pending?.records.at(-1)?.seq ?? 0,
        epoch: pending?.epoch ?? newEpoch(),
      };
    }
    const tail = pending ? [...pending.records] : [];
    const last = tail.at(-1)?.seq ?? row.last;
    const want = this.#window.capacity - tail.length;
    const from = Math.max(row.first, row.last - want + 1, last - this.#max + 1);
    const disk = want > 0 ? this.#rowsBetween(row, from, row.last + 1) : [];
    return { records: [...disk, ...tail], last, epoch: row.epoch };
  }

  #roomRow(room: string): RoomRow | undefined {
    const row = this.#room.get(room);
    if (!row) return undefined;
    return {
      id: Number(row.id),
      epoch: String(row.epoch),
      first: Number(row.first),
      last: Number(row.last),
    };
  }

  /** Seq of the room's oldest record kept: on disk (`row`), and within `max`. */
  #oldestKept(row: RoomRow | undefined, last: number): number {
    return Math.max(row?.first ?? last + 1, last - this.#max + 1);
  }

  /** The records of the room `row` with `from <= seq < to`, oldest first. */
  #rowsBetween(
    row: RoomRow | undefined,
    from: number,
    to: number,
  ): ChatRecord[] {
    if (!row || from >= to) return [];
    return this.#range.all(row.id, from, to).map((r) => {
      const m = r as unknown as MessageRow;
      return {
        seq: Number(m.seq),
        from: m.sender,
        time: Number(m.time),
        text: m.text,
      };
    });
  }

  #readFailed(err: unknown): void {
    this.#metrics.historyReadFailures++;
    this.#logger.log("error", "history read failed", { error: errorText(err) });
  }

  #scheduleTrim(): void {
    if (this.#overfull.size === 0 || this.#trimTimer !== null) return;
    if (this.#closed) return;
    this.#trimTimer = setTimeout(this.#trim, 0);
  }

  /** Deletes up to {@link TRIM_BATCH} of one room's oldest surplus rows. */
  #trim = (): void => {
    this.#trimTimer = null;
    const room: string | undefined = this.#overfull.values().next().value;
    if (room === undefined) return;
    const row = this.#roomRow(room);
    const target = row ? row.last - this.#max + 1 : 0;
    if (!row || row.first >= target) {
      this.#overfull.delete(room);
      this.#scheduleTrim();
      return;
    }
    const first = Math.min(target, row.first + TRIM_BATCH);
    try {
      this.#db.exec("BEGIN");
      this.#trimRows.run(row.id, first);
      this.#setFirst.run(first, row.id);
      this.#db.exec("COMMIT");
      this.#rows -= first - row.first;
      if (first === target) this.#overfull.delete(room);
    } catch (err) {
      this.#rollback();
      this.#metrics.historyWriteFailures++;
      this.#logger.log("warn", "history trim failed; will retry", {
        room,
        error: errorText(err),
      });
      // Retried with the next commit, not in a tight loop on a full disk.
      return;
    }
    this.#scheduleTrim();
  };
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
