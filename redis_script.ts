/**
 * Lua scripts run on Redis by their SHA1 (EVALSHA), with the source as the
 * fallback when Redis lost its script cache (NOSCRIPT): each call sends 40
 * bytes of script rather than all of it. Shared by the bus (publish, read)
 * and presence (changes, renewals), which run their scripts through one
 * connection: the bus's {@link RedisCommands}.
 *
 * @module
 */

/** KEYS and ARGV of a script call. */
export interface ScriptOptions {
  /** KEYS. */
  keys: string[];
  /** ARGV. */
  arguments: string[];
}

/**
 * The commands the bus and presence need of a Redis connection (node-redis
 * has them).
 */
export interface RedisCommands {
  /** EVAL. */
  eval(script: string, options: ScriptOptions): Promise<unknown>;
  /** EVALSHA. */
  evalSha(sha: string, options: ScriptOptions): Promise<unknown>;
  /** HGETALL, as an object. */
  hGetAll(key: string): Promise<Record<string, string>>;
}

/** A Lua script and its SHA1, for EVALSHA with a fallback to EVAL. */
export interface Script {
  /** The Lua source. */
  readonly source: string;
  /** Its SHA1, in hex. */
  readonly sha: string;
}

/**
 * `source` with its SHA1. Web Crypto rather than node:crypto's createHash:
 * this module is loaded by every server, and node:crypto alone added 9 MB
 * to an idle one's RSS. Its digest is asynchronous, so callers await it
 * once at module load (a top-level await), leaving no await per call.
 */
export async function script(source: string): Promise<Script> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    new TextEncoder().encode(source),
  );
  return { source, sha: new Uint8Array(digest).toHex() };
}

/**
 * Runs `s` by its SHA1, sending the source only when Redis lost its script
 * cache (NOSCRIPT).
 */
export async function evalScript(
  cmd: RedisCommands,
  s: Script,
  options: ScriptOptions,
): Promise<unknown> {
  try {
    return await cmd.evalSha(s.sha, options);
  } catch (err) {
    if (!String(err).includes("NOSCRIPT")) throw err;
    return await cmd.eval(s.source, options);
  }
}
