/**
 * The data file behind `--data`: opening it, recognising it as hubbub's,
 * and bringing its schema up to date. Anything that is not a usable hubbub
 * database (another file, a corrupt one, one from a newer hubbub, one that
 * cannot be opened or is locked by another process) is a
 * {@link DataFileError} with a one-line message, never an empty start.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";

/** How hard SQLite pushes each commit to the disk (`--data-sync`). */
export type DataSync = "normal" | "full";

/** The data file cannot be used; the message is one line for the operator. */
export class DataFileError extends Error {
  /** Distinguishes it from other errors in logs. */
  override name = "DataFileError";
}

/**
 * Marks the file as hubbub's (`PRAGMA application_id`, "hubb" in ASCII),
 * so that another program's SQLite database is refused, not written into.
 */
export const APPLICATION_ID = 0x68756262;

/** The schema this code writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 1;

/**
 * Steps from each version to the next: `MIGRATIONS[v]` turns version `v`
 * into `v + 1`, inside one transaction with the version bump. Version 0 is
 * an empty file. A new schema adds one step at the end and bumps
 * {@link SCHEMA_VERSION}; files of every older version then open by
 * running the steps they lack, in order.
 */
const MIGRATIONS: readonly string[] = [
  // 0 → 1. Rooms by name, with the epoch and the range of seqs on disk;
  // messages keyed by (room id, seq) and stored in that order, so a room's
  // tail or a page before a seq is one range scan.
  `CREATE TABLE rooms (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     epoch TEXT NOT NULL,
     first_seq INTEGER NOT NULL,
     last_seq INTEGER NOT NULL
   );
   CREATE TABLE messages (
     room INTEGER NOT NULL,
     seq INTEGER NOT NULL,
     sender TEXT NOT NULL,
     time INTEGER NOT NULL,
     text TEXT NOT NULL,
     PRIMARY KEY (room, seq)
   ) WITHOUT ROWID;`,
];

/**
 * Opens (creating if absent) the hubbub database at `path` in WAL mode with
 * the given `synchronous` level, holding it exclusively: a second process
 * on the same file would number the same rooms twice.
 *
 * @throws {DataFileError} when the file cannot be used.
 */
export function openHistoryDb(path: string, sync: DataSync): DatabaseSync {
  checkPath(path);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (err) {
    throw new DataFileError(`cannot open ${path}: ${reason(err)}`);
  }
  try {
    // Before the first access: SQLite then keeps WAL's index in process
    // memory instead of a shared -shm file, and holds the lock until close.
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    const mode = db.prepare("PRAGMA journal_mode = WAL").get();
    if (mode?.journal_mode !== "wal") {
      throw new DataFileError(`${path}: cannot use write-ahead logging`);
    }
    db.exec(`PRAGMA synchronous = ${sync === "full" ? "FULL" : "NORMAL"}`);
    migrate(db, path);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof DataFileError) throw err;
    throw new DataFileError(describe(path, err));
  }
}

/** Refuses paths SQLite would only describe as "unable to open". */
function checkPath(path: string): void {
  try {
    if (Deno.statSync(path).isDirectory) {
      throw new DataFileError(`${path} is a directory, not a database file`);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    if (err instanceof Deno.errors.NotCapable) {
      throw new DataFileError(
        `no permission for ${path}: run with --allow-read and --allow-write for it`,
      );
    }
    if (err instanceof DataFileError) throw err;
    throw new DataFileError(`cannot open ${path}: ${reason(err)}`);
  }
}

/** Checks that the file is a hubbub database and runs missing migrations. */
function migrate(db: DatabaseSync, path: string): void {
  // Taking the write lock first: a locked file fails here, before any read
  // of a schema another process may be changing.
  db.exec("BEGIN IMMEDIATE");
  try {
    const app = Number(
      db.prepare("PRAGMA application_id").get()?.application_id,
    );
    let version = Number(db.prepare("PRAGMA user_version").get()?.user_version);
    const tables = Number(
      db.prepare("SELECT count(*) AS n FROM sqlite_master").get()?.n,
    );
    if (app !== APPLICATION_ID && !(app === 0 && tables === 0)) {
      throw new DataFileError(`${path} is not a hubbub database`);
    }
    if (version > SCHEMA_VERSION) {
      throw new DataFileError(
        `${path} was written by a newer hubbub (schema ${version}; this one reads up to ${SCHEMA_VERSION})`,
      );
    }
    for (; version < SCHEMA_VERSION; version++) {
      db.exec(MIGRATIONS[version]);
      db.exec(`PRAGMA user_version = ${version + 1}`);
    }
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    // Reads the rooms table whole (one row per room, not per message): a
    // damaged file fails here rather than in the middle of a chat.
    db.prepare("SELECT count(*), sum(last_seq - first_seq) FROM rooms").get();
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/** The one-line explanation of a SQLite error at open. */
function describe(path: string, err: unknown): string {
  const why = reason(err);
  if (/not a database/.test(why)) {
    return `${path} is not a hubbub database (${why})`;
  }
  if (/malformed|corrupt/.test(why)) {
    return `${path} is corrupt (${why}); restore it from a backup or move it away`;
  }
  if (/locked|busy/.test(why)) {
    return `${path} is in use by another process (${why})`;
  }
  return `cannot use ${path}: ${why}`;
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
