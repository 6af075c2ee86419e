/**
 * JWT auth against a real server: tokens minted here with jose, sockets and
 * requests over loopback. Covers every refusal (status, reason, metric
 * label, one log line without the token), identity and presence, expiry and
 * refresh, the bearer subprotocol entry, `/echo` and `/auth`.
 */

import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { SWEEP_MS } from "../expiry.ts";
import type { LogFields, Logger } from "../log.ts";
import {
  connect,
  type TestServer,
  TestSocket,
  UPGRADE_HEADERS,
  within,
  withServer,
} from "./helpers.ts";

const SECRET = "a-test-secret-of-at-least-32-bytes!!";
const AUDIENCE = "hubbub-test";
const ISSUER = "https://issuer.test/";
const AUTH = { jwtSecret: SECRET, jwtAudience: AUDIENCE, jwtIssuer: ISSUER };

function now(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * An HS256 token for alice with the server's audience and issuer, valid for
 * an hour; `claims` override (undefined removes a claim).
 */
function mint(
  claims: Record<string, unknown> = {},
  secret = SECRET,
  alg = "HS256",
): Promise<string> {
  return new SignJWT({
    sub: "alice-id",
    name: "Alice",
    aud: AUDIENCE,
    iss: ISSUER,
    iat: now(),
    exp: now() + 3600,
    ...claims,
  }).setProtectedHeader({ alg }).sign(new TextEncoder().encode(secret));
}

function base64url(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-")
    .replace(/\//g, "_");
}

/** Status and body of an upgrade request made with fetch. */
async function upgrade(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { headers: { ...UPGRADE_HEADERS, ...headers } });
  const text = await res.text();
  if (res.status === 101) throw new Error("upgraded: " + url);
  return { status: res.status, text: text.trim() };
}

async function metric(srv: TestServer, series: string): Promise<number> {
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? NaN : Number(line.split(" ")[1]);
}

/** A logger that keeps its lines, to check what refusals log. */
function recordingLogger(): Logger & { lines: [string, LogFields][] } {
  const lines: [string, LogFields][] = [];
  return {
    lines,
    log: (_level, msg, fields = {}) => lines.push([msg, fields]),
  };
}

Deno.test("auth: every bad token is refused before the upgrade, counted and logged once without the token", async () => {
  const logger = recordingLogger();
  await withServer(async (srv) => {
    const good = await mint();
    const [head, body, sig] = good.split(".");
    const flipped = sig[5] === "A" ? "B" : "A";
    const cases: [string, string | null, number, string, string][] = [
      ["missing", null, 401, "missing token", "missing"],
      ["malformed", "not-a-jwt", 401, "malformed token", "malformed"],
      ["garbage parts", "a.b.c", 401, "malformed token", "malformed"],
      [
        "expired",
        await mint({ exp: now() - 60 }),
        401,
        "token expired",
        "expired",
      ],
      [
        "not yet valid",
        await mint({ nbf: now() + 3600 }),
        401,
        "token not yet valid",
        "not_yet_valid",
      ],
      [
        "wrong signature",
        `${head}.${body}.${sig.slice(0, 5)}${flipped}${sig.slice(6)}`,
        401,
        "bad token signature",
        "bad_signature",
      ],
      [
        "other secret",
        await mint({}, "another-secret-also-32-bytes-long!!"),
        401,
        "bad token signature",
        "bad_signature",
      ],
      [
        "forged claims",
        `${head}.${base64url({ sub: "mallory", aud: AUDIENCE })}.${sig}`,
        401,
        "bad token signature",
        "bad_signature",
      ],
      [
        "alg none",
        `${base64url({ alg: "none", typ: "JWT" })}.${body}.`,
        401,
        "token algorithm not allowed",
        "alg_not_allowed",
      ],
      [
        "HS512",
        await mint({}, SECRET, "HS512"),
        401,
        "token algorithm not allowed",
        "alg_not_allowed",
      ],
      [
        "wrong audience",
        await mint({ aud: "someone-else" }),
        401,
        "wrong token audience",
        "wrong_audience",
      ],
      [
        "wrong issuer",
        await mint({ iss: "https://evil.test/" }),
        401,
        "wrong token issuer",
        "wrong_issuer",
      ],
      [
        "no sub",
        await mint({ sub: undefined }),
        401,
        "token has no sub claim",
        "bad_claims",
      ],
      [
        "exp not a number",
        await mint({ exp: "tomorrow" }),
        401,
        "invalid token claims",
        "bad_claims",
      ],
      [
        "rooms not a list",
        await mint({ rooms: "lobby" }),
        401,
        "rooms claim must be a list of strings",
        "bad_claims",
      ],
    ];
    for (const [what, token, status, reason, label] of cases) {
      const query = token === null ? "" : `?token=${token}`;
      const before = await metric(
        srv,
        `hubbub_auth_failures_total{reason="${label}"}`,
      );
      const res = await upgrade(`${srv.http}/ws${query}`);
      assert.deepEqual(res, { status, text: reason }, what);
      assert.equal(
        await metric(srv, `hubbub_auth_failures_total{reason="${label}"}`),
        before + 1,
        what,
      );
    }
    const refusals = logger.lines.filter(([msg]) => msg === "auth refused");
    assert.equal(refusals.length, cases.length);
    const logged = JSON.stringify(logger.lines);
    for (const [, token] of cases) {
      if (token && token.length > 10) assert(!logged.includes(token));
    }
    assert.deepEqual(refusals[0][1], {
      reason: "missing",
      status: 401,
      path: "/ws",
      room: "lobby",
    });
    const res = await fetch(`${srv.http}/ws`, { headers: UPGRADE_HEADERS });
    assert.equal(res.headers.get("www-authenticate"), "Bearer");
    await res.body?.cancel();
  }, { ...AUTH, logger });
});

Deno.test("auth: a valid token in ?token= opens a plain socket; the page and /healthz stay open", async () => {
  await withServer(async (srv) => {
    const s = await connect(`${srv.ws}/ws?token=${await mint()}`);
    assert.equal(s.socket.protocol, "");
    s.send("hello");
    await s.waitLines(1);
    assert.deepEqual(s.lines, ["hello"]);
    await s.close();
    for (const path of ["/", "/healthz", "/metrics"]) {
      const res = await fetch(srv.http + path);
      await res.body?.cancel();
      assert.equal(res.status, 200, path);
    }
  }, AUTH);
});

Deno.test("auth: the bearer entry carries the token; it is never echoed and hubbub.v1 is still selected", async () => {
  await withServer(async (srv) => {
    const token = await mint();
    const json = await connect(`${srv.ws}/ws`, [
      "hubbub.v1",
      `bearer.${token}`,
    ]);
    assert.equal(json.socket.protocol, "hubbub.v1");
    await json.waitLines(1);
    assert.equal(json.messages[0].type, "welcome");
    // Only the token entry: no protocol selected (non-browser clients).
    const only = await connect(`${srv.ws}/ws`, `bearer.${token}`);
    assert.equal(only.socket.protocol, "");
    // With the token-free marker, for browsers: the marker is selected.
    const marked = await connect(`${srv.ws}/ws`, ["bearer", `bearer.${token}`]);
    assert.equal(marked.socket.protocol, "bearer");
    marked.send("plain via marker");
    await marked.waitLines(1);
    assert.deepEqual(marked.lines, ["plain via marker"]);
    // The handshake's answer, read raw: no token in any header.
    const res = await fetch(`${srv.http}/ws`, {
      headers: {
        ...UPGRADE_HEADERS,
        "sec-websocket-protocol": `bearer.${token}, hubbub.v1`,
      },
    });
    assert.equal(res.status, 101);
    assert.equal(res.headers.get("sec-websocket-protocol"), "hubbub.v1");
    assert(![...res.headers].some(([, v]) => v.includes(token)));
    await res.body?.cancel();
    await Promise.all([json.close(), only.close(), marked.close()]);
  }, AUTH);
});

Deno.test("auth: the offer is read as an HTTP list (no spaces, repeats); same choice, no token echoed, no 5xx", async () => {
  await withServer(async (srv) => {
    const token = await mint();
    // What each spelling of the offer selects; null: no protocol header.
    const cases: [string, string, string | null][] = [
      ["/ws", `hubbub.v1,bearer.${token}`, "hubbub.v1"],
      ["/ws", `bearer.${token},hubbub.v1`, "hubbub.v1"],
      ["/ws", `chat,bearer.${token},  hubbub.v1`, "hubbub.v1"],
      ["/ws", `bearer,bearer.${token}`, "bearer"],
      ["/ws", `bearer.${token},chat`, null],
      ["/echo", `hubbub.v1,bearer.${token}`, null],
      ["/echo", `bearer.${token},bearer`, "bearer"],
    ];
    // 101 for each: the token was read whole from the entry, or auth would
    // have refused with 401.
    for (const [path, offer, selected] of cases) {
      const res = await fetch(srv.http + path, {
        headers: { ...UPGRADE_HEADERS, "sec-websocket-protocol": offer },
      });
      await res.body?.cancel();
      const label = `${path} ${offer.replace(token, "<JWT>")}`;
      assert.equal(res.status, 101, label);
      assert.equal(res.headers.get("sec-websocket-protocol"), selected, label);
      assert(![...res.headers].some(([, v]) => v.includes(token)), label);
    }
  }, AUTH);
});

Deno.test("auth: the name comes from the token (name, else sub); ?name= and nick are refused", async () => {
  await withServer(async (srv) => {
    const token = await mint();
    const alice = await connect(
      `${srv.ws}/ws?name=impostor&token=${token}`,
      "hubbub.v1",
    );
    await alice.waitLines(1);
    assert.equal(alice.messages[0].you, "Alice");
    alice.send(JSON.stringify({ type: "nick", name: "mallory" }));
    alice.send(JSON.stringify({ type: "message", text: "hi" }));
    await alice.waitFor(
      () => alice.messages.some((m) => m.type === "message"),
      "own message",
    );
    const error = alice.messages.find((m) => m.type === "error");
    assert.equal(error?.code, "auth_name");
    assert.equal(
      alice.messages.find((m) => m.type === "message")?.from,
      "Alice",
    );
    assert(!alice.messages.some((m) => m.type === "nick"));

    const bare = await connect(
      `${srv.ws}/ws?token=${await mint({ sub: "bob-id", name: undefined })}`,
      "hubbub.v1",
    );
    await bare.waitLines(1);
    assert.equal(bare.messages[0].you, "bob-id");
    await Promise.all([alice.close(), bare.close()]);
  }, AUTH);
});

Deno.test("auth: the rooms claim allows its rooms and trailing-* prefixes, 403 elsewhere", async () => {
  await withServer(async (srv) => {
    const token = await mint({ rooms: ["dev", "team-*"] });
    for (const room of ["dev", "team-a", "team-"]) {
      const s = await connect(`${srv.ws}/ws?room=${room}&token=${token}`);
      await s.close();
    }
    for (const room of ["lobby", "devops", "team"]) {
      assert.deepEqual(
        await upgrade(`${srv.http}/ws?room=${room}&token=${token}`),
        { status: 403, text: "token does not allow this room" },
        room,
      );
    }
    assert.deepEqual(await upgrade(`${srv.http}/ws?token=${token}`), {
      status: 403,
      text: "token does not allow this room",
    });
    assert.equal(
      await metric(
        srv,
        'hubbub_auth_failures_total{reason="room_not_allowed"}',
      ),
      4,
    );
    // /echo has no room: the claim does not limit it.
    const echo = await connect(`${srv.ws}/echo?token=${token}`);
    await echo.close();
  }, AUTH);
});

Deno.test("auth: /echo needs a token too; the command-line form (bearer entry only) works", async () => {
  await withServer(async (srv) => {
    assert.deepEqual(await upgrade(`${srv.http}/echo`), {
      status: 401,
      text: "missing token",
    });
    const s = await connect(`${srv.ws}/echo`, `bearer.${await mint()}`);
    assert.equal(s.socket.protocol, "");
    s.send("ping");
    await s.waitLines(1);
    assert.deepEqual(s.lines, ["ping"]);
    await s.close();
  }, AUTH);
});

Deno.test("auth: two sockets of one user are one person: one join, one presence entry, one leave", async () => {
  await withServer(async (srv) => {
    const bob = await connect(
      `${srv.ws}/ws?token=${await mint({ sub: "bob-id", name: "Bob" })}`,
      "hubbub.v1",
    );
    const token = await mint();
    const tab1 = await connect(`${srv.ws}/ws?token=${token}`, "hubbub.v1");
    await bob.waitFor(
      () => bob.messages.some((m) => m.type === "join" && m.name === "Alice"),
      "alice's join",
    );
    const tab2 = await connect(`${srv.ws}/ws`, [
      "hubbub.v1",
      `bearer.${token}`,
    ]);
    await tab2.waitLines(1);
    const welcome = tab2.messages[0];
    assert.equal(welcome.you, "Alice");
    assert.deepEqual([...(welcome.members as string[])].sort(), [
      "Alice",
      "Bob",
    ]);
    assert.equal(welcome.memberCount, 2);
    tab2.send(JSON.stringify({ type: "who" }));
    await tab2.waitFor(
      () => tab2.messages.some((m) => m.type === "presence"),
      "presence",
    );
    const presence = tab2.messages.find((m) => m.type === "presence");
    assert.deepEqual([...(presence?.members as string[])].sort(), [
      "Alice",
      "Bob",
    ]);
    // Room events reach bob in order: had tab2 been announced, its join
    // would come before this message.
    const marker = (text: string) => () =>
      bob.messages.some((m) => m.type === "message" && m.text === text);
    bob.send(JSON.stringify({ type: "message", text: "after tab2" }));
    await bob.waitFor(marker("after tab2"), "bob's first marker");
    await tab1.close();
    bob.send(JSON.stringify({ type: "message", text: "after tab1 left" }));
    await bob.waitFor(marker("after tab1 left"), "bob's second marker");
    const aliceEvents = () =>
      bob.messages.filter((m) =>
        (m.type === "join" || m.type === "leave") && m.name === "Alice"
      ).map((m) => m.type);
    assert.deepEqual(aliceEvents(), ["join"]);
    await tab2.close();
    await bob.waitFor(() => aliceEvents().length === 2, "alice's leave");
    assert.deepEqual(aliceEvents(), ["join", "leave"]);
    await bob.close();
  }, AUTH);
});

Deno.test("auth: a token expiring while connected closes 1008; a refreshed one keeps the socket open", async () => {
  await withServer(async (srv) => {
    const soon = now() + 2;
    const expiring = await connect(
      `${srv.ws}/ws?token=${await mint({ exp: soon })}`,
      "hubbub.v1",
    );
    const echo = await connect(
      `${srv.ws}/echo?token=${await mint({ exp: soon })}`,
    );
    const refreshed = await connect(
      `${srv.ws}/ws?token=${await mint({ exp: soon })}`,
      "hubbub.v1",
    );
    const send = (msg: unknown) => refreshed.send(JSON.stringify(msg));
    const errors = () => refreshed.messages.filter((m) => m.type === "error");
    // Refused refreshes leave the old expiry standing.
    send({ type: "token", token: "junk" });
    send({ type: "token", token: await mint({ sub: "bob-id" }) });
    send({ type: "token", token: await mint({ exp: now() - 60 }) });
    send({ type: "token", token: await mint({ rooms: ["elsewhere"] }) });
    await refreshed.waitFor(() => errors().length === 4, "four refusals");
    assert.deepEqual(errors().map((e) => [e.code, e.message]), [
      ["bad_token", "malformed token"],
      ["bad_token", "token is for another user"],
      ["bad_token", "token expired"],
      ["bad_token", "token does not allow this room"],
    ]);
    send({ type: "token", token: await mint({ exp: now() + 3600 }) });

    for (const s of [expiring, echo]) {
      const ev = await within(s.closed, "expiry close");
      assert.equal(ev.code, 1008);
      assert.equal(ev.reason, "token expired");
    }
    // The others closed at the shared deadline; one more sweep later the
    // refreshed socket is still open and chatting.
    await new Promise((r) => setTimeout(r, SWEEP_MS + 200));
    assert.equal(refreshed.socket.readyState, WebSocket.OPEN);
    send({ type: "message", text: "still here" });
    await refreshed.waitFor(
      () => refreshed.messages.some((m) => m.text === "still here"),
      "own message after the old expiry",
    );
    assert.equal(await metric(srv, 'hubbub_closes_total{code="1008"}'), 2);
    await refreshed.close();
  }, AUTH);
});

Deno.test("auth: a plain token refresh without auth is an error, not a crash", async () => {
  await withServer(async (srv) => {
    const s = await connect(`${srv.ws}/ws`, "hubbub.v1");
    s.send(JSON.stringify({ type: "token", token: "x" }));
    s.send(JSON.stringify({ type: "token" }));
    await s.waitFor(
      () => s.messages.filter((m) => m.type === "error").length === 2,
      "two errors",
    );
    assert.deepEqual(
      s.messages.filter((m) => m.type === "error").map((m) => m.code),
      ["bad_token", "bad_token"],
    );
    await s.close();
  });
});

Deno.test("auth: GET /auth reports the token as the upgrade would judge it", async () => {
  await withServer(async (srv) => {
    const res = await fetch(`${srv.http}/auth`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { auth: false });
  });
  await withServer(async (srv) => {
    const check = async (
      token: string | null,
      query = "",
      headers: Record<string, string> = {},
    ) => {
      const res = await fetch(`${srv.http}/auth${query}`, {
        headers: {
          ...(token === null ? {} : { authorization: `Bearer ${token}` }),
          ...headers,
        },
      });
      const type = res.headers.get("content-type") ?? "";
      return {
        status: res.status,
        body: type.startsWith("application/json")
          ? await res.json()
          : (await res.text()).trim(),
      };
    };
    const exp = now() + 600;
    const token = await mint({ exp, rooms: ["dev"] });
    assert.deepEqual(await check(token), {
      status: 200,
      body: { auth: true, name: "Alice", exp },
    });
    assert.deepEqual(await check(token, "?room=dev"), {
      status: 200,
      body: { auth: true, name: "Alice", exp },
    });
    assert.deepEqual(await check(token, "?room=lobby"), {
      status: 403,
      body: "token does not allow this room",
    });
    assert.deepEqual(await check(await mint({ exp: now() - 5 })), {
      status: 401,
      body: "token expired",
    });
    assert.deepEqual(await check(null), { status: 401, body: "missing token" });
    assert.deepEqual(await check(token, "?room=bad/room"), {
      status: 400,
      body: "room must be 1-64 characters of A-Z a-z 0-9 _ . -",
    });
    assert.deepEqual(
      await check(token, "", { origin: "https://evil.example" }),
      { status: 403, body: "origin not allowed" },
    );
    const head = await fetch(`${srv.http}/auth`, {
      method: "HEAD",
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("cache-control"), "no-store");
    assert.equal(await head.text(), "");
    const post = await fetch(`${srv.http}/auth`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    // A check is not a refused socket.
    assert.equal(
      await metric(srv, 'hubbub_auth_failures_total{reason="expired"}'),
      0,
    );
  }, AUTH);
});

Deno.test("auth: many refused handshakes at once leave the server serving", async () => {
  // Many bad handshakes at once, then a good one: all answered, none leaks.
  await withServer(async (srv) => {
    const bad = await Promise.all(
      Array.from({ length: 20 }, () => upgrade(`${srv.http}/ws?token=x.y.z`)),
    );
    assert(bad.every((r) => r.status === 401));
    const ok = new TestSocket(`${srv.ws}/ws?token=${await mint()}`);
    await within(ok.opened, "open after refusals");
    await ok.close();
  }, AUTH);
});
