/**
 * TLS and the auth/TLS flags: `main.ts` with a self-signed certificate made
 * at test time by openssl, an https page, wss chat between two clients that
 * trust the certificate (a child Deno with `--cert`), plaintext sent to the
 * TLS port, and files that are missing or unusable.
 */

import assert from "node:assert/strict";
import { ConfigError, helpText, parseConfig } from "../config.ts";
import { selfSigned, spawnServer, within } from "./helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ENV_FLAG = "--allow-env=HUBBUB_*,DENO_USE_WRITEV";

/** Runs `main.ts` with `args`; for starts that must fail. */
async function runMain(args: string[], allowRead = true) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      ENV_FLAG,
      ...(allowRead ? ["--allow-read"] : []),
      MAIN,
      "--port",
      "0",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Two wss clients in one room: one sends, the other must receive it. */
const WSS_CHAT = `
const base = Deno.args[0];
const open = (ws) => new Promise((ok, fail) => {
  ws.onopen = ok;
  ws.onerror = (e) => fail(new Error(e.message));
});
const a = new WebSocket(base + "/ws?room=tls");
const b = new WebSocket(base + "/ws?room=tls", "hubbub.v1");
await Promise.all([open(a), open(b)]);
const got = new Promise((ok) => {
  b.onmessage = (e) => {
    for (const line of e.data.split("\\n")) {
      const m = JSON.parse(line);
      if (m.type === "message") ok(m.text);
    }
  };
});
a.send("over wss");
console.log(await got);
for (const ws of [a, b]) {
  const closed = new Promise((ok) => (ws.onclose = ok));
  ws.close();
  await closed;
}
`;

Deno.test("tls: https page, wss chat between two clients, plaintext on the TLS port", async () => {
  const { dir, cert, key } = await selfSigned();
  try {
    const server = await spawnServer(
      ["--cert", cert, "--key", key, "--port", "0"],
      ["--allow-net", ENV_FLAG, `--allow-read=${dir}`],
    );
    const client = Deno.createHttpClient({
      caCerts: [await Deno.readTextFile(cert)],
    });
    try {
      const https = `https://127.0.0.1:${server.port}`;
      const page = await fetch(`${https}/`, { client });
      assert.equal(page.status, 200);
      assert.equal(
        page.headers.get("content-type"),
        "text/html; charset=utf-8",
      );
      assert.match(await page.text(), /<html/i);

      // A plaintext request to the TLS port gets no HTTP answer, and the
      // server goes on serving.
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      await conn.write(
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      );
      const reply = new Uint8Array(4096);
      let text = "";
      for (;;) {
        const n = await within(conn.read(reply), "plaintext answer");
        if (n === null) break;
        text += new TextDecoder().decode(reply.subarray(0, n));
      }
      conn.close();
      assert(!text.startsWith("HTTP/"), "no HTTP answer over plaintext");
      const health = await fetch(`${https}/healthz`, { client });
      assert.equal((await health.json()).status, "ok");

      const chat = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--cert",
          cert,
          WSS_CHAT,
          `wss://127.0.0.1:${server.port}`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(chat.stderr);
      assert.equal(chat.code, 0, stderr);
      assert.equal(new TextDecoder().decode(chat.stdout).trim(), "over wss");

      // Without trusting the certificate a client refuses the server.
      await assert.rejects(fetch(`${https}/`));
      assert.doesNotMatch(server.stderr(), /ERROR/);
    } finally {
      client.close();
      const status = await server.stop();
      assert.equal(status.code, 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tls: missing, unreadable or unusable files are one line naming the file, exit 2", async () => {
  const { dir, cert, key } = await selfSigned();
  try {
    const garbage = `${dir}/garbage.pem`;
    await Deno.writeTextFile(garbage, "not a certificate\n");
    const cases: [string[], boolean, RegExp][] = [
      [
        ["--cert", `${dir}/missing.pem`, "--key", key],
        true,
        /^hubbub: --cert: cannot read ".*missing\.pem": no such file$/,
      ],
      [
        ["--cert", cert, "--key", `${dir}/nokey.pem`],
        true,
        /^hubbub: --key: cannot read ".*nokey\.pem": no such file$/,
      ],
      [
        ["--cert", cert, "--key", key],
        false,
        /^hubbub: --cert: cannot read ".*cert\.pem": no read permission/,
      ],
      [
        ["--cert", garbage, "--key", key],
        true,
        /^hubbub: --cert\/--key: No certificates found/,
      ],
      [["--cert", cert], true, /^hubbub: --cert needs --key too/],
      [
        ["--jwt-jwks-url", "ftp://keys.example/"],
        true,
        /^hubbub: --jwt-jwks-url: expected an http\(s\) URL/,
      ],
    ];
    for (const [args, allowRead, line] of cases) {
      const out = await runMain(args, allowRead);
      assert.equal(out.code, 2, args.join(" "));
      assert.equal(out.stdout, "");
      const lines = out.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, out.stderr);
      assert.match(lines[0], line);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tls: auth and TLS flags have HUBBUB_* twins; --help says to pass the secret by environment", () => {
  const env: Record<string, string> = {
    HUBBUB_JWT_SECRET: "from-env",
    HUBBUB_JWT_JWKS_URL: "https://keys.example/jwks.json",
    HUBBUB_JWT_AUDIENCE: "aud",
    HUBBUB_JWT_ISSUER: "iss",
    HUBBUB_CERT: "c.pem",
    HUBBUB_KEY: "k.pem",
  };
  const parsed = parseConfig([], (name) => env[name]);
  assert(parsed.kind === "run");
  assert.equal(parsed.config.jwtSecret, "from-env");
  assert.equal(parsed.config.jwtJwksUrl, "https://keys.example/jwks.json");
  assert.equal(parsed.config.jwtAudience, "aud");
  assert.equal(parsed.config.jwtIssuer, "iss");
  assert.equal(parsed.config.cert, "c.pem");
  assert.equal(parsed.config.key, "k.pem");
  const flags = parseConfig(["--jwt-secret", "from-flag"], (n) => env[n]);
  assert(flags.kind === "run");
  assert.equal(flags.config.jwtSecret, "from-flag");
  const none = parseConfig([], () => undefined);
  assert(none.kind === "run");
  assert.equal(none.config.jwtSecret, undefined);
  assert.equal(none.config.cert, undefined);
  assert.throws(
    () => parseConfig(["--key", "k.pem"], () => undefined),
    ConfigError,
  );
  const help = helpText();
  for (
    const flag of [
      "jwt-secret",
      "jwt-jwks-url",
      "jwt-audience",
      "jwt-issuer",
      "cert",
      "key",
    ]
  ) {
    assert.match(help, new RegExp(`--${flag} `));
  }
  assert.match(help, /HUBBUB_JWT_SECRET, as flags show in ps/);
});
