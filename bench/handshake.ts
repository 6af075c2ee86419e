/**
 * Handshake rate with and without token auth: N sequential upgrades (open,
 * then close and wait for the close) against a `main.ts` server without
 * auth and one with `--jwt-secret`, each client presenting the same valid
 * HS256 token. The servers run in their own processes, as in
 * `deno task bench`. A benchmark, not a test.
 *
 * deno run --allow-all bench/handshake.ts [--upgrades 1000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SignJWT } from "jose";
import { NO_LIMITS, startServer } from "./server.ts";

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: { upgrades: { type: "string", default: "1000" } },
});
const upgrades = Number(values.upgrades);
const SECRET = crypto.randomUUID() + crypto.randomUUID();

/** Seconds for `upgrades` sequential open-and-close handshakes to `url`. */
async function run(url: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < upgrades; i++) {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => ws.close();
      ws.onerror = () => reject(new Error("handshake failed: " + url));
      ws.onclose = () => resolve();
    });
  }
  return (performance.now() - started) / 1000;
}

const token = await new SignJWT({ name: "bench" })
  .setProtectedHeader({ alg: "HS256" }).setSubject("bench")
  .setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
const open = await startServer({ args: NO_LIMITS });
const authed = await startServer({
  args: NO_LIMITS,
  env: { HUBBUB_JWT_SECRET: SECRET },
});
try {
  const plain = await run(`ws://127.0.0.1:${open.port}/ws?room=bench`);
  const auth = await run(
    `ws://127.0.0.1:${authed.port}/ws?room=bench&token=${token}`,
  );
  const rate = (s: number) => Math.round(upgrades / s);
  console.log("| server | upgrades | seconds | upgrades/s |");
  console.log("|---|---:|---:|---:|");
  console.log(
    `| no auth | ${upgrades} | ${plain.toFixed(2)} | ${rate(plain)} |`,
  );
  console.log(
    `| HS256 token | ${upgrades} | ${auth.toFixed(2)} | ${rate(auth)} |`,
  );
  console.log(`auth/no-auth rate: ${(plain / auth).toFixed(2)}`);
} finally {
  await Promise.all([open.stop(), authed.stop()]);
}
