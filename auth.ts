/**
 * Who a socket belongs to when auth is on. A client presents a JWT; it is
 * verified with jose (HS256 against `--jwt-secret`, RS256 and ES256 against
 * the key set at `--jwt-jwks-url`) and becomes an {@link Identity}, or an
 * {@link AuthFailure} that says which HTTP status, plain-text reason and
 * metric label the refusal gets. Nothing here parses a token by hand, and
 * nothing here knows about requests: the gate finds the token, this module
 * judges it.
 *
 * @module
 */

import type * as Jose from "jose";
import type { JWTPayload, JWTVerifyGetKey, JWTVerifyOptions } from "jose";
import type { Logger } from "./log.ts";
import { MAX_NAME_LENGTH } from "./protocol.ts";

/** The auth settings of an instance; auth is on when a key source is set. */
export interface AuthOptions {
  /** Shared secret for HS256 tokens. */
  jwtSecret?: string;
  /** URL of a JSON Web Key Set with the RS256/ES256 public keys. */
  jwtJwksUrl?: string;
  /** Required `aud` claim, when set. */
  jwtAudience?: string;
  /** Required `iss` claim, when set. */
  jwtIssuer?: string;
  /**
   * Seconds after a key-set fetch during which a token with an unknown
   * `kid` is refused without fetching again; default 30.
   */
  jwtJwksCooldown?: number;
}

/**
 * Seconds a token's `nbf` may lie in the future: the issuer's
 * clock may run a little ahead of ours, and a token minted and used at once
 * must not bounce. `exp` gets no leeway: it is the issuer's deadline, and a
 * socket is closed at it, so the handshake judges it the same way.
 */
export const CLOCK_LEEWAY_SECONDS = 10;

/**
 * HS256 is as strong as its secret; RFC 7518 asks for a key at least as
 * long as the hash. Shorter secrets work but are logged as a warning.
 */
const MIN_SECRET_BYTES = 32;

/** How long a key-set fetch may take before the token is refused (503). */
const JWKS_TIMEOUT_MS = 5000;

/** The metric label of each way a token can be refused. */
export type AuthFailureReason =
  | "missing"
  | "malformed"
  | "expired"
  | "not_yet_valid"
  | "bad_signature"
  | "alg_not_allowed"
  | "wrong_audience"
  | "wrong_issuer"
  | "bad_claims"
  | "unknown_key"
  | "room_not_allowed"
  | "keys_unavailable";

/** Every {@link AuthFailureReason}, so the metric shows each from zero. */
export const AUTH_FAILURE_REASONS: readonly AuthFailureReason[] = [
  "missing",
  "malformed",
  "expired",
  "not_yet_valid",
  "bad_signature",
  "alg_not_allowed",
  "wrong_audience",
  "wrong_issuer",
  "bad_claims",
  "unknown_key",
  "room_not_allowed",
  "keys_unavailable",
];

/** Why a token was refused: the answer before the upgrade, and its label. */
export interface AuthFailure {
  /** 401 for the token, 403 for the room, 503 when keys cannot be fetched. */
  status: 401 | 403 | 503;
  /** Plain-text reason for the client; never contains the token. */
  message: string;
  /** Label of `hubbub_auth_failures_total`. */
  reason: AuthFailureReason;
}

/** A verified token, reduced to what the server uses. */
export interface Identity {
  /** The `sub` claim: sockets with the same one are the same person. */
  user: string;
  /** The chat name: the `name` claim, else `sub`, made displayable. */
  name: string;
  /** When the token expires, milliseconds since the epoch; null: never. */
  expires: number | null;
  /** The `rooms` claim, or null when the token may go anywhere. */
  rooms: readonly string[] | null;
}

/** jose, loaded, with the key lookup for the configured keys. */
interface Verifier {
  jose: typeof Jose;
  getKey: JWTVerifyGetKey;
}

/** Verifies tokens against the configured keys and claims. */
export class Auth {
  readonly #verifier: Promise<Verifier>;
  readonly #options: JWTVerifyOptions;

  /**
   * An authenticator for `options`, or null when neither a secret nor a key
   * set is configured (auth off). A short secret is logged as a warning.
   */
  static fromOptions(options: AuthOptions, logger: Logger): Auth | null {
    if (!options.jwtSecret && !options.jwtJwksUrl) return null;
    const secret = new TextEncoder().encode(options.jwtSecret ?? "");
    if (options.jwtSecret && secret.length < MIN_SECRET_BYTES) {
      logger.log("warn", "jwt secret is short", {
        advice: `use at least ${MIN_SECRET_BYTES} random bytes`,
      });
    }
    return new Auth(options);
  }

  /** Use {@link Auth.fromOptions}. */
  private constructor(options: AuthOptions) {
    const algorithms: string[] = [];
    let secret: Promise<CryptoKey> | null = null;
    if (options.jwtSecret) {
      algorithms.push("HS256");
      // Imported once: jose would import a raw secret again on every token.
      secret = crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(options.jwtSecret),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["verify"],
      );
    }
    // Parsed here, not when jose has loaded: a bad URL throws to the caller.
    const jwksUrl = options.jwtJwksUrl ? new URL(options.jwtJwksUrl) : null;
    if (jwksUrl) algorithms.push("RS256", "ES256");
    const cooldownMs = (options.jwtJwksCooldown ?? 30) * 1000;
    // Loaded only when auth is on, not imported by the module, which every
    // server loads: jose added 6 MB to the RSS of an idle server that never
    // verifies a token. A string literal, so that `deno compile` embeds it.
    this.#verifier = import("jose").then((jose) => ({
      jose,
      getKey: keyLookup(jose, secret, jwksUrl, cooldownMs),
    }));
    this.#options = {
      algorithms,
      clockTolerance: CLOCK_LEEWAY_SECONDS,
      ...(options.jwtAudience ? { audience: options.jwtAudience } : {}),
      ...(options.jwtIssuer ? { issuer: options.jwtIssuer } : {}),
    };
  }

  /**
   * The identity in `token`, or why it is refused. Rejects only on an
   * error that is not about the token (a bug), which must not pass as a
   * refusal.
   */
  async verify(token: string | null): Promise<Identity | AuthFailure> {
    if (token === null || token === "") {
      return unauthorized("missing", "missing token");
    }
    const { jose, getKey } = await this.#verifier;
    let payload: JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, getKey, this.#options));
    } catch (err) {
      return failureOf(err, jose.errors);
    }
    // jose allows exp up to the leeway in the past; see CLOCK_LEEWAY_SECONDS.
    if (typeof payload.exp === "number" && payload.exp * 1000 <= Date.now()) {
      return unauthorized("expired", "token expired");
    }
    return identityOf(payload);
  }
}

/**
 * Checks a token a connected client sent to extend its socket's life: the
 * new identity, or why it is refused. It must verify, be for the same
 * `sub`, and allow the room the socket is in (`room`; null once it left).
 */
export async function checkRefresh(
  auth: Auth | null,
  token: string,
  user: string | undefined,
  room: string | null,
): Promise<Identity | string> {
  if (!auth || user === undefined) return "this server does not use tokens";
  const verdict = await auth.verify(token);
  if (isAuthFailure(verdict)) return verdict.message;
  if (verdict.user !== user) return "token is for another user";
  if (room !== null && !roomAllowed(verdict.rooms, room)) {
    return "token does not allow this room";
  }
  return verdict;
}

/** Whether a token with the `rooms` claim `rooms` may join `room`. */
export function roomAllowed(
  rooms: readonly string[] | null,
  room: string,
): boolean {
  if (rooms === null) return true;
  return rooms.some((pattern) =>
    pattern.endsWith("*")
      ? room.startsWith(pattern.slice(0, -1))
      : room === pattern
  );
}

/** The 403 a token gets for a room outside its `rooms` claim. */
export const ROOM_REFUSED: AuthFailure = {
  status: 403,
  message: "token does not allow this room",
  reason: "room_not_allowed",
};

/** Whether `value` is a refusal rather than an identity. */
export function isAuthFailure(
  value: Identity | AuthFailure,
): value is AuthFailure {
  return "reason" in value;
}

/**
 * The key for a token's header: the HS256 secret (`secret`, imported as a
 * key) or one from the key set at `jwksUrl`, fetched by jose and fetched
 * again no sooner than `cooldownMs` after the last fetch.
 */
function keyLookup(
  jose: typeof Jose,
  secret: Promise<CryptoKey> | null,
  jwksUrl: URL | null,
  cooldownMs: number,
): JWTVerifyGetKey {
  const { errors } = jose;
  const keySet = jwksUrl
    ? jose.createRemoteJWKSet(jwksUrl, {
      timeoutDuration: JWKS_TIMEOUT_MS,
      cooldownDuration: cooldownMs,
    })
    : null;
  return async (header, token) => {
    if (header.alg === "HS256" && secret) return await secret;
    if (!keySet) throw new errors.JOSEAlgNotAllowed("no key for this alg");
    try {
      return await keySet(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) throw err;
      throw new KeysUnavailable(err);
    }
  };
}

/** The key set could not be fetched or read: our problem, not the token's. */
class KeysUnavailable extends Error {
  override name = "KeysUnavailable";
  constructor(cause: unknown) {
    super("signing keys unavailable", { cause });
  }
}

function unauthorized(reason: AuthFailureReason, message: string): AuthFailure {
  return { status: 401, message, reason };
}

// Display names are the protocol's: no control characters, bounded length.
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** The identity a verified payload describes, or why its claims are unusable. */
function identityOf(payload: JWTPayload): Identity | AuthFailure {
  const { sub, exp } = payload;
  if (typeof sub !== "string" || sub === "") {
    return unauthorized("bad_claims", "token has no sub claim");
  }
  const rooms = payload.rooms;
  if (
    rooms !== undefined &&
    !(Array.isArray(rooms) && rooms.every((r) => typeof r === "string"))
  ) {
    return unauthorized("bad_claims", "rooms claim must be a list of strings");
  }
  const claimed = typeof payload.name === "string"
    ? displayName(payload.name)
    : "";
  return {
    user: sub,
    name: claimed || displayName(sub) || "user",
    expires: typeof exp === "number" ? exp * 1000 : null,
    rooms: rooms ?? null,
  };
}

/** `raw` without control characters, trimmed, cut to the name limit. */
function displayName(raw: string): string {
  return raw.replace(CONTROL, "").trim().slice(0, MAX_NAME_LENGTH).trim();
}

/** Maps what jose threw (one of `errors`) to the refusal the client gets. */
function failureOf(err: unknown, errors: typeof Jose.errors): AuthFailure {
  if (err instanceof KeysUnavailable) {
    return {
      status: 503,
      message: "cannot fetch signing keys",
      reason: "keys_unavailable",
    };
  }
  if (err instanceof errors.JWTExpired) {
    return unauthorized("expired", "token expired");
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    // "invalid": a time claim that is not a number, whichever it is.
    if (err.reason === "invalid") {
      return unauthorized("bad_claims", "invalid token claims");
    }
    switch (err.claim) {
      case "nbf":
        return unauthorized("not_yet_valid", "token not yet valid");
      case "aud":
        return unauthorized("wrong_audience", "wrong token audience");
      case "iss":
        return unauthorized("wrong_issuer", "wrong token issuer");
      default:
        return unauthorized("bad_claims", "invalid token claims");
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return unauthorized("bad_signature", "bad token signature");
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return unauthorized("alg_not_allowed", "token algorithm not allowed");
  }
  if (
    err instanceof errors.JWKSNoMatchingKey ||
    err instanceof errors.JWKSMultipleMatchingKeys
  ) {
    return unauthorized("unknown_key", "unknown token signing key");
  }
  if (
    err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid ||
    err instanceof errors.JOSEError || err instanceof TypeError
  ) {
    // JOSEError covers the rest of jose's complaints about the token's form
    // (unsupported header values and the like); TypeError is what jose
    // throws for claims of the wrong type.
    return unauthorized("malformed", "malformed token");
  }
  throw err;
}
