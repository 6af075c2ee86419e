/**
 * Scale-out through Redis: the {@link Relay} that joins several hubbub
 * processes into one chat. Redis is the only place a seq is assigned: one
 * Lua script per message sets the room's epoch if it has none, increments
 * its seq, appends the message to the room's stream (ID = seq, trimmed to
 * about `historyMax`) and publishes it. Every instance, the sender's too,
 * delivers only what arrives on its subscriber connection, so all see one
 * order; per room it delivers the next seq, drops old ones and fills jumps
 * from the stream before going on. After the subscriber reconnects, and
 * every few seconds while a room is quiet, it compares the room's seq in
 * Redis with its own and catches up. A new epoch (Redis lost the room, e.g.
 * restarted without persistence) is announced to JSON clients.
 *
 * Rooms are subscribed while this instance has members in them; their
 * newest records live in a {@link RelayWindow}, the hub's history store, so
 * the hub builds welcomes synchronously as without Redis.
 *
 * @module
 */

import type { createClient } from "redis";
import { type HistoryPage, newEpoch } from "./history.ts";
import type { Hub, Member, MemberEvent, Relay } from "./hub.ts";
import type { LogFields, Logger } from "./log.ts";
import type { ChatRecord } from "./protocol.ts";
import { RelayWindow } from "./relay_window.ts";
import { PRESENCE_PREFIX, RedisPresence } from "./redis_presence.ts";
import {
  evalScript,
  type RedisCommands,
  type Script,
  script,
} from "./redis_script.ts";

/**
 * Seconds a room's state (seq, epoch, stream) outlives its last message or
 * read. Instances with members refresh it every {@link CATCH_UP_MS}; a room
 * nobody visits for a week starts again under a new epoch.
 */
const ROOM_TTL_SECONDS = 7 * 24 * 3600;

/** A room quiet for this long is compared with Redis (and its TTL renewed). */
const CATCH_UP_MS = 3000;

/** Records read from a stream per round trip when filling a jump. */
const FILL_BATCH = 1000;

/**
 * How long a join waits for the link while the instance is (re)connecting,
 * before the socket is closed with 1013 "try again later".
 */
const ADMIT_WAIT_MS = 2000;

/**
 * Publishes awaiting Redis's answer beyond which new ones are refused to
 * their senders. Each waits as a command in the client's queue: in a
 * three-second overload (80k/s offered to two instances) their peak RSS
 * was 1,032 MB unbounded and 426 MB with this bound. 100 in flight already
 * reach about 130k publishes/s (measured for the issue), so the bound costs
 * no throughput.
 */
const MAX_IN_FLIGHT = 10_000;

/** Longest pause between reconnect attempts, in milliseconds. */
const MAX_RECONNECT_DELAY_MS = 1000;

/**
 * Lua putting the room's epoch in `epoch`; a room without one gets
 * `ARGV[newEpochArg]` (a new life: its old stream, if any, is meaningless).
 * KEYS: meta hash, stream.
 */
function epochLua(newEpochArg: number): string {
  return `
local epoch = redis.call('hget', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[${newEpochArg}]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'epoch', epoch)
end`;
}

/**
 * One message: sets the room's epoch if it has none ({@link epochLua}),
 * takes the next seq, appends to the stream with the seq as its ID, renews
 * the TTL and publishes `SEQ EPOCH BODY`. KEYS: meta hash, stream. ARGV: body, maxlen, ttl,
 * channel, epoch for a new life.
 */
const PUBLISH_LUA = `${epochLua(5)}
local seq = redis.call('hincrby', KEYS[1], 'seq', 1)
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'b', ARGV[1])
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
redis.call('publish', ARGV[4], seq .. ' ' .. epoch .. ' ' .. ARGV[1])
return {seq, epoch}
`;

/**
 * A room's epoch and seq with records of its stream, read atomically; a
 * room without state gets an epoch, so a welcome always has one. KEYS: meta
 * hash, stream. ARGV: `tail` (the newest COUNT), `<SEQ` (the COUNT before
 * SEQ, newest first) or the first seq wanted, COUNT, ttl, epoch for a new
 * life.
 */
const READ_LUA = `${epochLua(4)}
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
local seq = redis.call('hget', KEYS[1], 'seq') or '0'
local entries
if ARGV[1] == 'tail' then
  entries = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', ARGV[2])
elseif string.sub(ARGV[1], 1, 1) == '<' then
  local before = '(' .. string.sub(ARGV[1], 2) .. '-0'
  entries = redis.call('xrevrange', KEYS[2], before, '-', 'COUNT', ARGV[2])
else
  entries = redis.call('xrange', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {epoch, seq, entries}
`;

const PUBLISH = await script(PUBLISH_LUA);
const READ = await script(READ_LUA);

/** What {@link READ_LUA} returns, parsed. */
interface RoomRead {
  epoch: string;
  seq: number;
  /** Oldest first. */
  records: ChatRecord[];
}

/** A message as it arrives on the subscriber connection. */
interface FeedMessage {
  seq: number;
  epoch: string;
  rec: ChatRecord;
}

/** What this instance knows of one room it has members in. */
interface Feed {
  readonly room: string;
  /** The epoch `last` belongs to; "" until loaded. */
  epoch: string;
  /** Newest seq handed to the hub. */
  last: number;
  /** Resolves true once subscribed and loaded, false when that failed. */
  loaded: Promise<boolean>;
  ready: boolean;
  /** A stream read is under way: feed messages wait in `held`. */
  busy: boolean;
  /** Feed messages not yet taken, in arrival (= publish) order. */
  held: FeedMessage[];
  /** Joins waiting for this feed; it is not dropped while any wait. */
  admitting: number;
  /** When the feed last brought something, for the idle catch-up. */
  heardAt: number;
  readonly listener: (message: string) => void;
}

/** Settings of a {@link RedisBus}. */
export interface RedisBusOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  /** Records each loaded room keeps in memory for welcomes. */
  history: number;
  /** Approximate length a room's stream is trimmed to. */
  historyMax: number;
  /**
   * Milliseconds this instance's members stay listed elsewhere without
   * renewal: how long a killed instance's members linger (up to a third
   * more). Renewal runs every third of it.
   */
  presenceTtlMs: number;
  /** Where link changes are reported. */
  logger: Logger;
  /** Called for each message Redis accepted from this instance's members. */
  accepted(): void;
}

/** Link state and counters for `/healthz` and `/metrics`. */
export interface RedisLinkState {
  /** Both connections (commands and subscriber) are ready. */
  up: boolean;
  /** Times a connection was re-established after it was lost. */
  reconnects: number;
  /** Messages refused to their senders because Redis did not take them. */
  refused: number;
}

type RedisClient = ReturnType<typeof createClient>;

/**
 * Why node-redis would refuse `url`, or null: the same rules it applies
 * when a client is created (a URL, a path that is a database number, a
 * user and password that decode). Checked before the package loads, so a
 * bad URL fails the start instead of the process after `listening on`.
 */
export function redisUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "not a URL";
  }
  const path = parsed.pathname;
  if (path !== "" && path !== "/" && Number.isNaN(Number(path.slice(1)))) {
    return `the path must be a database number, got "${path}"`;
  }
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    return "the user or password is not validly %-encoded";
  }
  return null;
}

/** What a call made before the redis package is loaded gets. */
function notLoaded(): Promise<never> {
  return Promise.reject(new Error("redis link not up yet"));
}

/** The Redis relay of one instance: two connections and the rooms it follows. */
export class RedisBus implements Relay {
  /** The hub's history store: the loaded rooms' newest records. */
  readonly window: RelayWindow;
  readonly #opts: RedisBusOptions;
  /** The command connection; null until the redis package is loaded. */
  #cmd: RedisClient | null = null;
  /** The subscriber connection; null until the redis package is loaded. */
  #sub: RedisClient | null = null;
  /**
   * The command connection's calls, refused while it does not exist yet as
   * they are while the link is down.
   */
  readonly #commands: RedisCommands = {
    eval: (source, options) => this.#cmd?.eval(source, options) ?? notLoaded(),
    evalSha: (sha, options) => this.#cmd?.evalSha(sha, options) ?? notLoaded(),
    hGetAll: (key) => this.#cmd?.hGetAll(key) ?? notLoaded(),
  };
  /** The redis package's load and the connections' creation. */
  readonly #loading: Promise<void>;
  readonly #feeds = new Map<string, Feed>();
  readonly #presence: RedisPresence;
  #hub: Hub | null = null;
  #up = false;
  /** Whether the link's state was logged yet: the first is, up or down. */
  #told = false;
  #everUp = new Set<RedisClient>();
  #reconnects = 0;
  #refused = 0;
  #inFlight = 0;
  #closed = false;
  #upWaiters: (() => void)[] = [];
  /**
   * The connections' first connect, which retries until it succeeds or the
   * client is closed; it settles only after the library's pending retry
   * pause, so close() waits for it to leave no timer behind.
   */
  #connecting: Promise<void>[] = [];
  readonly #ticker: ReturnType<typeof setInterval>;
  readonly #presenceTicker: ReturnType<typeof setInterval>;

  /** Starts connecting at once; the link comes up by itself. */
  constructor(opts: RedisBusOptions) {
    const problem = redisUrlProblem(opts.url);
    if (problem !== null) throw new TypeError(`redis URL: ${problem}`);
    this.#opts = opts;
    this.window = new RelayWindow(opts.history);
    // Loaded here rather than imported by the module, which every server
    // loads: the redis package added 30 MB to the RSS of an idle server that
    // never uses it. Until it is loaded the link is simply not up yet. A
    // string literal, so that `deno compile` still embeds the package.
    this.#loading = import("redis")
      .then(({ createClient }) => this.#connect(createClient))
      .catch((err) => {
        opts.logger.log("error", "redis client not created", {
          error: String(err),
        });
      });
    this.#presence = new RedisPresence(this.#commands, {
      ttlMs: opts.presenceTtlMs,
      warn: (msg, fields) => this.#warn(msg, fields),
      channelOf,
      onRemote: (room, event) => this.#hub?.remote(room, event),
    });
    this.#ticker = setInterval(this.#tick, CATCH_UP_MS);
    this.#presenceTicker = setInterval(
      this.#presenceTick,
      opts.presenceTtlMs / 3,
    );
  }

  /** Creates both connections and starts connecting them, unless closed. */
  #connect(create: typeof createClient): void {
    if (this.#closed) return;
    const options = {
      url: this.#opts.url,
      // Refused at once while the link is down, so that a sender is told
      // instead of its message waiting for a Redis that may never return.
      disableOfflineQueue: true,
      // Redis Enterprise's maintenance notices: off, which also keeps the
      // library from reading environment variables nobody granted.
      maintNotifications: "disabled" as const,
      socket: {
        // The default gives up on a socket timeout; this instance never does.
        reconnectStrategy: (retries: number) =>
          Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS) +
          Math.floor(Math.random() * 100),
      },
    };
    const cmd: RedisClient = create(options);
    const sub: RedisClient = create(options);
    this.#cmd = cmd;
    this.#sub = sub;
    this.#watch(cmd);
    this.#watch(sub);
    this.#connecting = [cmd, sub].map((client) =>
      client.connect().then(() => {}, (err) => {
        if (!this.#closed) {
          this.#opts.logger.log("error", "redis connect failed", {
            error: String(err),
          });
        }
      })
    );
  }

  /** Binds the hub that delivered messages go to; once, before any join. */
  attach(hub: Hub): void {
    this.#hub = hub;
  }

  /** The link and its counters. */
  get state(): RedisLinkState {
    return {
      up: this.#up,
      reconnects: this.#reconnects,
      refused: this.#refused,
    };
  }

  admit(
    room: string,
    since: number | undefined,
    epoch: string | undefined,
    join: () => void,
    refuse: () => void,
  ): void {
    let feed = this.#feeds.get(room);
    if (feed?.ready && this.#olderWanted(feed, since, epoch) === 0) {
      join();
      return;
    }
    if (!feed) {
      feed = this.#newFeed(room);
      this.#feeds.set(room, feed);
      feed.loaded = this.#load(feed);
    }
    const f = feed;
    f.admitting++;
    (async () => {
      const ok = await f.loaded;
      let older: ChatRecord[] = [];
      try {
        if (ok) older = await this.#older(f, since, epoch);
      } catch (err) {
        // The welcome then says `gap`: what the window has is all it gets.
        this.#warn("redis history not read", { room, error: String(err) });
      }
      f.admitting--;
      if (!ok || this.#feeds.get(room) !== f) {
        refuse();
        return;
      }
      // Synchronously with the join: nothing can slip in between.
      if (older.length > 0) this.window.prepend(room, older);
      join();
    })().catch((err) => {
      // A bug in the join itself: one socket fails, not the process.
      this.#opts.logger.log("error", "join failed", {
        room,
        error: String(err),
      });
    });
  }

  publish(room: string, draft: Omit<ChatRecord, "seq">, sender: Member): void {
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      this.#refuse(sender, "busy");
      return;
    }
    this.#inFlight++;
    const body = JSON.stringify([draft.from, draft.time, draft.text]);
    this.#eval(PUBLISH, room, [
      body,
      String(this.#opts.historyMax),
      String(ROOM_TTL_SECONDS),
      channelOf(room),
      newEpoch(),
    ]).then(() => {
      this.#inFlight--;
      this.#opts.accepted();
    }, () => {
      this.#inFlight--;
      this.#refuse(sender, "unreachable");
    });
  }

  elsewhere(room: string): readonly string[] {
    return this.#presence.elsewhere(room);
  }

  presence(room: string, member: Member, event: MemberEvent): void {
    this.#presence.change(room, member, event);
  }

  vacated(room: string): void {
    const feed = this.#feeds.get(room);
    if (!feed || feed.admitting > 0) return;
    this.#feeds.delete(room);
    this.window.drop(room);
    this.#presence.drop(room);
    // When this fails the link is down; the stale subscription the client
    // may restore only brings messages for a room no feed wants, ignored.
    this.#sub?.unsubscribe(channelOf(room), feed.listener).catch(() => {});
  }

  /**
   * Scrollback from any instance: up to `limit` records before `seq` from
   * the room's stream, oldest first, the epoch they belong to, and whether
   * older ones remain. For the JSON `history` request of durable history;
   * unlike a local store's, this read is a round trip to Redis.
   */
  async before(
    room: string,
    seq: number,
    limit: number,
  ): Promise<HistoryPage> {
    await this.#whenUp();
    let r: RoomRead;
    try {
      r = await this.#read(room, `<${seq}`, limit + 1);
    } catch (err) {
      this.#warn("redis history not read", { room, error: String(err) });
      throw err;
    }
    const more = r.records.length > limit;
    const records = more ? r.records.slice(1) : r.records;
    return { records, epoch: r.epoch, more };
  }

  /** Stops following rooms and closes both connections. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#ticker);
    clearInterval(this.#presenceTicker);
    for (const wake of this.#upWaiters) wake();
    this.#upWaiters = [];
    this.#feeds.clear();
    // Connections are made when the package is loaded, unless closed by then.
    await this.#loading;
    await Promise.all([this.#cmd, this.#sub].map(async (client) => {
      if (!client) return;
      if (client.isReady) {
        await client.close();
      } else if (client.isOpen) {
        client.destroy();
      }
    }));
    await Promise.all(this.#connecting);
  }

  #newFeed(room: string): Feed {
    return {
      room,
      epoch: "",
      last: 0,
      loaded: Promise.resolve(false),
      ready: false,
      busy: true,
      held: [],
      admitting: 0,
      heardAt: performance.now(),
      listener: (message: string) => this.#onFeed(room, message),
    };
  }

  /** Subscribes the room, then loads its newest records into the window. */
  async #load(feed: Feed): Promise<boolean> {
    try {
      await this.#whenUp();
      // Subscribed first: what is published during the read is held, and
      // the read's seq says which of it is new.
      await (this.#sub?.subscribe(channelOf(feed.room), feed.listener) ??
        notLoaded());
      const [r] = await Promise.all([
        this.#read(feed.room, "tail", this.#opts.history),
        this.#presence.load(feed.room),
      ]);
      if (this.#feeds.get(feed.room) !== feed) return false;
      feed.epoch = r.epoch;
      feed.last = r.seq;
      this.window.reset(feed.room, r.epoch, r.seq, r.records);
      feed.ready = true;
      this.#release(feed);
      return true;
    } catch (err) {
      this.#warn("redis room not loaded", {
        room: feed.room,
        error: String(err),
      });
      if (this.#feeds.get(feed.room) === feed) {
        this.#feeds.delete(feed.room);
        this.#sub?.unsubscribe(channelOf(feed.room), feed.listener).catch(
          () => {}, // as in vacated: the link is down
        );
      }
      return false;
    }
  }

  /**
   * How many records before the window a join after `since` needs from the
   * stream (0 when the window covers it or `since` is void anyway).
   */
  #olderWanted(
    feed: Feed,
    since: number | undefined,
    epoch: string | undefined,
  ): number {
    if (since === undefined || since > feed.last) return 0;
    if (epoch !== undefined && epoch !== feed.epoch) return 0;
    const wanted = this.window.oldest(feed.room) - 1 - since;
    return Math.max(0, Math.min(wanted, this.#opts.historyMax));
  }

  /** The records a join after `since` needs from before the window. */
  async #older(
    feed: Feed,
    since: number | undefined,
    epoch: string | undefined,
  ): Promise<ChatRecord[]> {
    const count = this.#olderWanted(feed, since, epoch);
    if (count === 0) return [];
    const r = await this.#read(feed.room, String(since! + 1), count);
    if (r.epoch !== feed.epoch) return [];
    const oldest = this.window.oldest(feed.room);
    return r.records.filter((rec) => rec.seq < oldest);
  }

  #onFeed(room: string, message: string): void {
    const feed = this.#feeds.get(room);
    if (!feed) return;
    if (message.startsWith(PRESENCE_PREFIX)) {
      this.#presence.onFeed(room, message);
      return;
    }
    const m = parseFeedMessage(message);
    if (!m) {
      this.#opts.logger.log("warn", "redis message not understood", { room });
      return;
    }
    feed.heardAt = performance.now();
    if (feed.busy) {
      feed.held.push(m);
    } else {
      this.#take(feed, m);
    }
  }

  /** Delivers the next seq, drops an old one, fills a jump or a new epoch. */
  #take(feed: Feed, m: FeedMessage): void {
    if (m.epoch === feed.epoch) {
      if (m.seq <= feed.last) return;
      if (m.seq === feed.last + 1) {
        this.#deliver(feed, m.rec);
        return;
      }
    }
    feed.held.push(m);
    this.#fill(feed);
  }

  #deliver(feed: Feed, rec: ChatRecord): void {
    feed.last = rec.seq;
    this.#hub?.deliver(feed.room, rec);
  }

  /** Reads what the feed missed from the stream, then takes what it held. */
  #fill(feed: Feed): void {
    feed.busy = true;
    this.#catchUp(feed).then(
      () => this.#release(feed),
      () => {
        // The link is down. What is held stays held; the next feed message
        // or the idle catch-up tries again.
        feed.busy = false;
      },
    );
  }

  async #catchUp(feed: Feed): Promise<void> {
    for (;;) {
      const r = await this.#read(feed.room, String(feed.last + 1), FILL_BATCH);
      if (this.#feeds.get(feed.room) !== feed) return;
      if (r.epoch !== feed.epoch) {
        // Redis lost the room: its numbering starts again, from the stream.
        feed.epoch = r.epoch;
        feed.last = 0;
        this.window.reset(feed.room, r.epoch, 0, []);
        this.#hub?.renumber(feed.room, r.epoch, 0);
        this.#opts.logger.log("warn", "room numbering started again", {
          room: feed.room,
          epoch: r.epoch,
        });
        continue;
      }
      // A record past the next seq means those between were trimmed away
      // (or never stored): they cannot be had, so delivery goes on.
      for (const rec of r.records) {
        if (rec.seq > feed.last) this.#deliver(feed, rec);
      }
      if (r.records.length < FILL_BATCH) {
        if (r.seq > feed.last) feed.last = r.seq;
        return;
      }
    }
  }

  /** Ends a read: takes the held feed messages in order until another read. */
  #release(feed: Feed): void {
    feed.busy = false;
    const held = feed.held;
    feed.held = [];
    for (let i = 0; i < held.length; i++) {
      this.#take(feed, held[i]);
      if (feed.busy) {
        feed.held.push(...held.slice(i + 1));
        return;
      }
    }
  }

  /** Every few seconds: rooms that were quiet compare their seq with Redis. */
  #tick = (): void => {
    const quiet = performance.now() - CATCH_UP_MS;
    for (const feed of this.#feeds.values()) {
      if (feed.ready && !feed.busy && feed.heardAt <= quiet) this.#fill(feed);
    }
  };

  /** Renews this instance's members and sweeps the dead, every room at once. */
  #presenceTick = (): void => {
    const rooms = [...this.#feeds.values()].filter((f) => f.ready).map((f) =>
      f.room
    );
    this.#presence.tick(rooms).catch((err) => {
      this.#warn("presence renewal failed", { error: String(err) });
    });
  };

  #refuse(sender: Member, why: "unreachable" | "busy"): void {
    this.#refused++;
    const hub = this.#hub;
    if (!hub || !sender.room) return;
    if (sender.json) {
      hub.sendError(
        sender,
        "unavailable",
        `message not sent: the chat service is ${why}, send it again later`,
      );
      return;
    }
    // A plain client has no error message: a close with a reason is what it
    // can see, and its reconnect finds the service back or refused.
    hub.leave(sender);
    sender.close(1013, "message not sent: chat unavailable");
  }

  async #read(room: string, from: string, count: number): Promise<RoomRead> {
    const reply = await this.#eval(READ, room, [
      from,
      String(count),
      String(ROOM_TTL_SECONDS),
      newEpoch(),
    ]);
    const read = parseRead(reply);
    if (from === "tail" || from.startsWith("<")) read.records.reverse();
    return read;
  }

  /** Runs `s` on the room's keys ({@link evalScript}). */
  #eval(s: Script, room: string, args: string[]): Promise<unknown> {
    return evalScript(this.#commands, s, {
      keys: [metaKey(room), streamKey(room)],
      arguments: args,
    });
  }

  /** Resolves once both connections are ready, or after {@link ADMIT_WAIT_MS}. */
  #whenUp(): Promise<void> {
    if (this.#up || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ADMIT_WAIT_MS);
      const waiters = this.#upWaiters;
      function done() {
        clearTimeout(timer);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  #watch(client: RedisClient): void {
    client.on("ready", () => {
      if (this.#everUp.has(client)) this.#reconnects++;
      this.#everUp.add(client);
      this.#noteLink();
      // Messages published while the subscriber was away never arrive:
      // every room compares with Redis now.
      if (client === this.#sub) {
        for (const feed of this.#feeds.values()) {
          if (feed.ready && !feed.busy) this.#fill(feed);
        }
      }
    });
    // The library reports every failed attempt; the link's state changes are
    // what is logged, once each.
    client.on("error", (err: unknown) => this.#noteLink(String(err)));
    client.on("reconnecting", () => this.#noteLink());
    client.on("end", () => this.#noteLink());
  }

  /**
   * Logs a failed Redis call, unless the link is down: then every call
   * fails, and the one line that says so is the link's.
   */
  #warn(msg: string, fields: LogFields): void {
    if (this.#up) this.#opts.logger.log("warn", msg, fields);
  }

  /** Logs the link's state when it changed; `error` says why it failed. */
  #noteLink(error?: string): void {
    const up = this.#cmd?.isReady === true && this.#sub?.isReady === true;
    if ((up === this.#up && this.#told) || this.#closed) return;
    // While the two connections first come up, down is not news.
    if (!this.#told && !up && error === undefined) return;
    this.#up = up;
    this.#told = true;
    const where = redactUrl(this.#opts.url);
    if (up) {
      this.#opts.logger.log("info", "redis link up", { redis: where });
      const waiters = this.#upWaiters;
      this.#upWaiters = [];
      for (const wake of waiters) wake();
    } else {
      this.#opts.logger.log("warn", "redis link down", {
        redis: where,
        error: error ?? "connection lost",
      });
    }
  }
}

function metaKey(room: string): string {
  return `hubbub:{${room}}:meta`;
}

function streamKey(room: string): string {
  return `hubbub:{${room}}:stream`;
}

function channelOf(room: string): string {
  return `hubbub:{${room}}`;
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}

/** A stored or published body: `[from, time, text]`, or null. */
function parseBody(body: string, seq: number): ChatRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  if (!Array.isArray(value) || value.length !== 3) return null;
  const [from, time, text] = value;
  if (typeof from !== "string" || typeof time !== "number") return null;
  if (typeof text !== "string") return null;
  return { seq, from, time, text };
}

/** `SEQ EPOCH BODY` from the subscriber connection, or null. */
function parseFeedMessage(message: string): FeedMessage | null {
  const a = message.indexOf(" ");
  const b = message.indexOf(" ", a + 1);
  if (a < 0 || b < 0) return null;
  const seq = Number(message.slice(0, a));
  if (!Number.isSafeInteger(seq) || seq < 1) return null;
  const rec = parseBody(message.slice(b + 1), seq);
  return rec ? { seq, epoch: message.slice(a + 1, b), rec } : null;
}

/** The reply of {@link READ_LUA}: `[epoch, seq, [[id, [field, value…]]…]]`. */
function parseRead(reply: unknown): RoomRead {
  if (!Array.isArray(reply) || reply.length !== 3) {
    throw new Error("unexpected reply to the read script");
  }
  const [epoch, seqRaw, entries] = reply;
  const seq = Number(seqRaw);
  if (typeof epoch !== "string" || !Number.isSafeInteger(seq)) {
    throw new Error("unexpected room state in Redis");
  }
  const records: ChatRecord[] = [];
  for (const entry of Array.isArray(entries) ? entries : []) {
    if (!Array.isArray(entry) || !Array.isArray(entry[1])) continue;
    const entrySeq = Number(String(entry[0]).split("-")[0]);
    const fields = entry[1] as unknown[];
    const i = fields.indexOf("b");
    const rec = i >= 0 && typeof fields[i + 1] === "string"
      ? parseBody(fields[i + 1] as string, entrySeq)
      : null;
    if (rec) records.push(rec);
  }
  return { epoch, seq, records };
}
