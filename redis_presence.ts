/**
 * Who is in a room across every instance joined through Redis. Each room
 * has a hash of its members (`INSTANCE:ID` → name) and a sorted set of
 * when each entry expires. Every instance renews its own members' entries
 * in one batched call every `ttl / 3`, and the same call sweeps expired
 * entries of the rooms it follows, atomically (one instance removes each)
 * and announces them as leaves on the room's channel: an instance killed
 * with `kill -9` has its members gone from everyone's list within about
 * `ttl + ttl / 3`. Joins, leaves and renames are published on the room's
 * channel as `P {json}`, next to its chat messages; an instance keeps the
 * names of members elsewhere for welcomes, `who` and the large-room rule,
 * and replaces that list with Redis's at every renewal, so a missed event
 * cannot leave it wrong for long.
 *
 * @module
 */

import type { Member, MemberEvent } from "./hub.ts";
import type { LogFields } from "./log.ts";
import { evalScript, type RedisCommands, script } from "./redis_script.ts";

/** Marks presence events on a room's channel (chat messages start with a seq). */
export const PRESENCE_PREFIX = "P ";

/**
 * One change of a member here. KEYS: members hash, expiry set. ARGV: op
 * (join, leave, nick), field, name, expiry time (ms), channel, ttl (s). A leave is announced only when the entry was still there, so a
 * sweep and a leave never both announce it.
 */
const CHANGE = await script(`
local op, field, name = ARGV[1], ARGV[2], ARGV[3]
if op == 'leave' then
  if redis.call('hdel', KEYS[1], field) == 0 then return 0 end
  redis.call('zrem', KEYS[2], field)
else
  redis.call('hset', KEYS[1], field, name)
  redis.call('zadd', KEYS[2], ARGV[4], field)
  redis.call('expire', KEYS[1], ARGV[6])
  redis.call('expire', KEYS[2], ARGV[6])
end
redis.call('publish', ARGV[5],
  '${PRESENCE_PREFIX}' .. cjson.encode({k = op, f = field, n = name}))
return 1
`);

/**
 * The renewal and sweep of every room followed here, in one call. KEYS:
 * per room its members hash and expiry set. ARGV: now (ms), expiry time
 * (ms), ttl (s), then per room its channel, the number of members here and
 * their field/name pairs. Returns per room the members hash after the
 * sweep, flat.
 */
const TICK = await script(`
local now, expires, ttl = ARGV[1], ARGV[2], ARGV[3]
local a = 4
local out = {}
for r = 1, #KEYS, 2 do
  local members, expiry = KEYS[r], KEYS[r + 1]
  local channel, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for i = 1, n do
    redis.call('hset', members, ARGV[a], ARGV[a + 1])
    redis.call('zadd', expiry, expires, ARGV[a])
    a = a + 2
  end
  for _, field in ipairs(redis.call('zrangebyscore', expiry, '-inf', now)) do
    local name = redis.call('hget', members, field)
    redis.call('hdel', members, field)
    redis.call('zrem', expiry, field)
    if name then
      redis.call('publish', channel,
        '${PRESENCE_PREFIX}' .. cjson.encode({k = 'leave', f = field, n = name}))
    end
  end
  if n > 0 then
    redis.call('expire', members, ttl)
    redis.call('expire', expiry, ttl)
  end
  out[#out + 1] = redis.call('hgetall', members)
end
return out
`);

/** Settings of a {@link RedisPresence}. */
export interface RedisPresenceOptions {
  /** Milliseconds an instance's entries live without renewal. */
  ttlMs: number;
  /** Reports a failed call. */
  warn(msg: string, fields: LogFields): void;
  /** The room's channel name. */
  channelOf(room: string): string;
  /** A member elsewhere joined, left or changed name. */
  onRemote(room: string, event: MemberEvent): void;
}

/** This instance's share of the cluster-wide member lists. */
export class RedisPresence {
  readonly #cmd: RedisCommands;
  readonly #opts: RedisPresenceOptions;
  /** Prefix of this instance's fields; random, so a restart is another. */
  readonly #self = crypto.randomUUID().slice(0, 8) + ":";
  /** Members here, by room: field → name. */
  readonly #local = new Map<string, Map<string, string>>();
  /** Members elsewhere, by room followed here: field → name. */
  readonly #remote = new Map<string, Map<string, string>>();
  /**
   * Their names as a list, built once per change: a welcome and every join
   * and leave ask for it, and a room filling up must not pay O(members)
   * for each.
   */
  readonly #names = new Map<string, string[]>();

  /** Presence through `cmd`, the bus's command connection. */
  constructor(cmd: RedisCommands, opts: RedisPresenceOptions) {
    this.#cmd = cmd;
    this.#opts = opts;
  }

  /** Names in the room on other instances. */
  elsewhere(room: string): readonly string[] {
    let names = this.#names.get(room);
    if (!names) {
      names = [...this.#remote.get(room)?.values() ?? []];
      this.#names.set(room, names);
    }
    return names;
  }

  /** Reads the room's members elsewhere; call once subscribed to its channel. */
  async load(room: string): Promise<void> {
    const all = await this.#cmd.hGetAll(membersKey(room));
    this.#remote.set(room, this.#others(Object.entries(all)));
    this.#names.delete(room);
  }

  /** Forgets a room no member here is in. */
  drop(room: string): void {
    this.#remote.delete(room);
    this.#names.delete(room);
    this.#local.delete(room);
  }

  /** Records and publishes a change of a member here. */
  change(room: string, member: Member, event: MemberEvent): void {
    const field = this.#self + member.id;
    let local = this.#local.get(room);
    if (!local) this.#local.set(room, local = new Map());
    if (event.kind === "leave") {
      local.delete(field);
    } else {
      local.set(field, event.name);
    }
    const args = [
      event.kind,
      field,
      event.name,
      String(Date.now() + this.#opts.ttlMs),
      this.#opts.channelOf(room),
      String(Math.ceil(this.#opts.ttlMs / 1000) * 2),
    ];
    evalScript(this.#cmd, CHANGE, {
      keys: [membersKey(room), expiryKey(room)],
      arguments: args,
    }).catch((err) => {
      // The next renewal writes this instance's members again (without an
      // announcement), and a leave not stored is swept when it expires.
      this.#opts.warn("presence change not stored", {
        room,
        error: String(err),
      });
    });
  }

  /** Takes a `P {json}` event from a room's channel. */
  onFeed(room: string, message: string): void {
    const remote = this.#remote.get(room);
    if (!remote) return;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(message.slice(PRESENCE_PREFIX.length));
    } catch {
      this.#opts.warn("presence event not understood", { room });
      return;
    }
    const { k, f, n } = e;
    if (typeof f !== "string" || typeof n !== "string") return;
    if (f.startsWith(this.#self)) return; // announced here already
    if (k === "join" || k === "nick") this.#set(room, remote, f, n);
    if (k === "leave") this.#set(room, remote, f, null);
  }

  /**
   * Brings one entry of the list up to date and announces the change, if it
   * is one: a change seen both on the channel and in a renewal's reply is
   * announced once, by whichever comes first.
   */
  #set(
    room: string,
    remote: Map<string, string>,
    field: string,
    name: string | null,
  ): void {
    const was = remote.get(field);
    if (was === name || (was === undefined && name === null)) return;
    this.#names.delete(room);
    if (name === null) {
      remote.delete(field);
      this.#opts.onRemote(room, { kind: "leave", name: was! });
    } else if (was === undefined) {
      remote.set(field, name);
      this.#opts.onRemote(room, { kind: "join", name });
    } else {
      remote.set(field, name);
      this.#opts.onRemote(room, { kind: "nick", from: was, name });
    }
  }

  /** Renews this instance's entries and sweeps expired ones, in one call. */
  async tick(rooms: string[]): Promise<void> {
    if (rooms.length === 0) return;
    const keys: string[] = [];
    const now = Date.now();
    const args = [
      String(now),
      String(now + this.#opts.ttlMs),
      String(Math.ceil(this.#opts.ttlMs / 1000) * 2),
    ];
    for (const room of rooms) {
      keys.push(membersKey(room), expiryKey(room));
      const local = this.#local.get(room) ?? new Map<string, string>();
      args.push(this.#opts.channelOf(room), String(local.size));
      for (const [field, name] of local) args.push(field, name);
    }
    const reply = await evalScript(this.#cmd, TICK, {
      keys,
      arguments: args,
    });
    if (!Array.isArray(reply)) return;
    rooms.forEach((room, i) => {
      const flat = reply[i];
      const remote = this.#remote.get(room);
      if (!Array.isArray(flat) || !remote) return;
      const pairs: [string, string][] = [];
      for (let j = 0; j + 1 < flat.length; j += 2) {
        pairs.push([String(flat[j]), String(flat[j + 1])]);
      }
      const now = this.#others(pairs);
      for (const field of remote.keys()) {
        if (!now.has(field)) this.#set(room, remote, field, null);
      }
      for (const [field, name] of now) this.#set(room, remote, field, name);
    });
  }

  #others(entries: [string, string][]): Map<string, string> {
    return new Map(entries.filter(([field]) => !field.startsWith(this.#self)));
  }
}

function membersKey(room: string): string {
  return `hubbub:{${room}}:members`;
}

function expiryKey(room: string): string {
  return `hubbub:{${room}}:expiry`;
}
