/**
 * Tokens checked against a JSON Web Key Set served by a local HTTP server on
 * a free loopback port: RS256 and ES256 keys, an unknown key, a key rotation
 * picked up without a restart, and a key set that cannot be fetched.
 */

import assert from "node:assert/strict";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { connect, UPGRADE_HEADERS, withServer } from "./helpers.ts";

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/** A signing key with its public JWK, as an issuer would publish it. */
async function signingKey(alg: "RS256" | "ES256", kid: string) {
  const pair: KeyPair = await generateKeyPair(alg);
  const jwk: JWK = {
    ...(await exportJWK(pair.publicKey)),
    kid,
    alg,
    use: "sig",
  };
  const mint = () =>
    new SignJWT({ name: `user of ${kid}` })
      .setProtectedHeader({ alg, kid })
      .setSubject(`sub-${kid}`)
      .setExpirationTime("10m")
      .sign(pair.privateKey);
  return { jwk, mint };
}

/** The key set's server: what it publishes can change; fetches are counted. */
function keySetServer(keys: JWK[]) {
  let fetches = 0;
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => {
      fetches++;
      return Response.json({ keys });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/.well-known/jwks.json`,
    keys,
    fetches: () => fetches,
    close: () => server.shutdown(),
  };
}

async function status(url: string): Promise<[number, string]> {
  const res = await fetch(url, { headers: UPGRADE_HEADERS });
  const text = (await res.text()).trim();
  return [res.status, text];
}

Deno.test("jwks: RS256 and ES256 tokens are verified with the published keys; a rotated key is fetched without a restart", async () => {
  const rs = await signingKey("RS256", "rs-1");
  const es = await signingKey("ES256", "es-1");
  const next = await signingKey("RS256", "rs-2");
  const keySet = keySetServer([rs.jwk, es.jwk]);
  try {
    await withServer(async (srv) => {
      for (const key of [rs, es]) {
        const s = await connect(`${srv.ws}/ws?token=${await key.mint()}`, [
          "hubbub.v1",
        ]);
        await s.waitLines(1);
        assert.equal(s.messages[0].you, `user of ${key.jwk.kid}`);
        await s.close();
      }
      assert.equal(keySet.fetches(), 1, "the key set is cached");

      // Signed by a key not (yet) published: refused after a refetch.
      assert.deepEqual(
        await status(`${srv.http}/ws?token=${await next.mint()}`),
        [
          401,
          "unknown token signing key",
        ],
      );
      assert.equal(keySet.fetches(), 2, "an unknown kid refetches");

      // Rotation: the issuer publishes rs-2 and retires rs-1.
      keySet.keys.splice(0, 1, next.jwk);
      const rotated = await connect(`${srv.ws}/ws?token=${await next.mint()}`);
      await rotated.close();
      assert.equal(keySet.fetches(), 3);
      assert.deepEqual(
        await status(`${srv.http}/ws?token=${await rs.mint()}`),
        [
          401,
          "unknown token signing key",
        ],
      );

      // HS256 is not accepted from a key-set-only server.
      const hs = await new SignJWT({}).setProtectedHeader({ alg: "HS256" })
        .setSubject("x").sign(new Uint8Array(32));
      assert.deepEqual(await status(`${srv.http}/ws?token=${hs}`), [
        401,
        "token algorithm not allowed",
      ]);
    }, { jwtJwksUrl: keySet.url, jwtJwksCooldown: 0 });
  } finally {
    await keySet.close();
  }
});

Deno.test("jwks: within the cooldown an unknown kid is refused without a fetch", async () => {
  const rs = await signingKey("RS256", "rs-1");
  const stranger = await signingKey("ES256", "es-x");
  const keySet = keySetServer([rs.jwk]);
  try {
    await withServer(async (srv) => {
      const s = await connect(`${srv.ws}/echo?token=${await rs.mint()}`);
      await s.close();
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(
          await status(`${srv.http}/ws?token=${await stranger.mint()}`),
          [401, "unknown token signing key"],
        );
      }
      assert.equal(keySet.fetches(), 1);
    }, { jwtJwksUrl: keySet.url });
  } finally {
    await keySet.close();
  }
});

Deno.test("jwks: a key set that cannot be fetched is 503, not the client's fault", async () => {
  const rs = await signingKey("RS256", "rs-1");
  const keySet = keySetServer([rs.jwk]);
  await keySet.close();
  await withServer(async (srv) => {
    assert.deepEqual(await status(`${srv.http}/ws?token=${await rs.mint()}`), [
      503,
      "cannot fetch signing keys",
    ]);
    const metrics = await (await fetch(`${srv.http}/metrics`)).text();
    assert.match(
      metrics,
      /hubbub_auth_failures_total\{reason="keys_unavailable"\} 1/,
    );
  }, { jwtJwksUrl: keySet.url });
});
