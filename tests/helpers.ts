/**
 * Test helpers: real servers on free ports (in-process or as a subprocess of
 * `main.ts`), real WebSocket clients with bounded waits, and a raw TCP peer
 * for misbehaving clients that a WebSocket object cannot imitate.
 *
 * @module
 */

import { createHubbub, type Hubbub, type HubbubOptions } from "../mod.ts";
import { type ChatRecord, JSON_SUBPROTOCOL } from "../protocol.ts";

/** How long any single wait in a test may take before it fails. */
export const WAIT_MS = 10_000;

/** Headers of a valid WebSocket upgrade, for requests made with fetch. */
export const UPGRADE_HEADERS = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

/** Rejects after `ms` with a message naming what was awaited. */
export function within<T>(
  promise: Promise<T>,
  what: string,
  ms = WAIT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms: ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it holds, failing after `ms`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An in-process server on a free loopback port. */
export interface TestServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  http: string;
  /** `ws://127.0.0.1:PORT` (no trailing slash). */
  ws: string;
  port: number;
  hubbub: Hubbub;
  close(): Promise<void>;
}

/**
 * `Deno.serve(handler)` on 127.0.0.1, on a port the system picks, once it
 * listens: the server and its port.
 */
export async function serveLocal(
  handler: Deno.ServeHandler<Deno.NetAddr>,
): Promise<{ server: Deno.HttpServer<Deno.NetAddr>; port: number }> {
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen: ({ port }) => listening.resolve(port),
  }, handler);
  return { server, port: await listening.promise };
}

/** Starts `createHubbub(options)` behind `Deno.serve` on port 0. */
export async function startServer(
  options: HubbubOptions = {},
): Promise<TestServer> {
  const hubbub = createHubbub({ rateLimit: 0, ...options });
  const { server, port } = await serveLocal(hubbub.handler);
  return {
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    port,
    hubbub,
    async close() {
      await hubbub.close(2000);
      await server.shutdown();
    },
  };
}

/**
 * Runs `fn` against a fresh {@link startServer} server with `options`, and
 * closes the server whether `fn` passes or fails.
 */
export async function withServer(
  fn: (srv: TestServer) => Promise<void>,
  options: HubbubOptions = {},
): Promise<void> {
  const srv = await startServer(options);
  try {
    await fn(srv);
  } finally {
    await srv.close();
  }
}

/** A WebSocket that records everything it receives. */
export class TestSocket {
  readonly socket: WebSocket;
  /** Every frame received, in order. */
  readonly frames: (string | ArrayBuffer)[] = [];
  /** Text frames split on `\n`: the messages of a coalescing server. */
  readonly lines: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  #waiters: (() => void)[] = [];

  constructor(url: string, protocols?: string | string[]) {
    this.socket = new WebSocket(url, protocols);
    this.socket.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseEvent>();
    this.opened = opened.promise;
    this.closed = closed.promise;
    this.socket.onopen = () => opened.resolve();
    this.socket.onerror = () => opened.reject(new Error(`cannot open ${url}`));
    this.socket.onclose = (ev) => {
      opened.reject(new Error(`closed before open: ${ev.code}`));
      closed.resolve(ev);
      this.#wake();
    };
    this.socket.onmessage = (ev) => {
      this.frames.push(ev.data);
      if (typeof ev.data === "string") this.lines.push(...ev.data.split("\n"));
      this.#wake();
    };
    // A socket that never opened still rejects `opened`; tests that expect
    // that await it, the rest must not fail on an unobserved rejection.
    this.opened.catch(() => {});
  }

  /** JSON-protocol messages received so far. */
  get messages(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l));
  }

  /** Waits until `check` holds on what has arrived. */
  async waitFor(check: () => boolean, what: string, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${what}`);
      const woke = new Promise<void>((r) => this.#waiters.push(r));
      await within(woke, what, left).catch((err) => {
        if (!check()) throw err;
      });
    }
  }

  /** Waits for at least `n` lines. */
  waitLines(n: number, ms = WAIT_MS): Promise<void> {
    return this.waitFor(
      () => this.lines.length >= n,
      `${n} lines (have ${this.lines.length})`,
      ms,
    );
  }

  /** Sends text. */
  send(data: string | Uint8Array): void {
    this.socket.send(data);
  }

  /** Closes (if still open) and waits for the close event. */
  async close(code = 1000): Promise<CloseEvent> {
    if (this.socket.readyState <= WebSocket.OPEN) {
      try {
        this.socket.close(code);
      } catch (err) {
        if (!(err instanceof DOMException)) throw err;
      }
    }
    return await within(this.closed, "close event");
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Opens a {@link TestSocket} and waits until it is open. */
export async function connect(
  url: string,
  protocols?: string | string[],
): Promise<TestSocket> {
  const s = new TestSocket(url, protocols);
  await within(s.opened, `open ${url}`);
  return s;
}

/** Opens `n` sockets to `url` at once and waits until all are open. */
export function connectMany(
  url: string,
  n: number,
  protocols?: string | string[],
): Promise<TestSocket[]> {
  return Promise.all(Array.from({ length: n }, () => connect(url, protocols)));
}

/** Closes every socket given, waiting for each close event. */
export async function closeAll(sockets: TestSocket[]): Promise<void> {
  await Promise.all(sockets.map((s) => s.close()));
}

/**
 * Opens a JSON-protocol client of `server` (in-process or a subprocess) at
 * `/ws` + `query` and waits for its welcome.
 */
export async function joinJson(
  server: { ws: string },
  query = "",
): Promise<TestSocket> {
  const s = await connect(`${server.ws}/ws${query}`, JSON_SUBPROTOCOL);
  await s.waitFor(() => s.lines.length > 0, "welcome");
  return s;
}

/** The JSON-protocol messages of `type` that `s` received, in order. */
export function ofType(
  s: TestSocket,
  type: string,
): Record<string, unknown>[] {
  return s.messages.filter((m) => m.type === type);
}

/** The whole numbers from `from` to `to`, both included: expected seqs. */
export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/**
 * Sends `lines` as chat messages from `s` and waits, up to `ms`, until all
 * are back.
 */
export async function post(
  s: TestSocket,
  lines: string[],
  ms: number = WAIT_MS,
): Promise<void> {
  for (const text of lines) {
    s.send(JSON.stringify({ type: "message", text }));
  }
  const last = JSON.stringify(lines.at(-1));
  await s.waitFor(() => s.lines.some((l) => l.includes(last)), last, ms);
}

/** `prefix` + each whole number from `from` to `to`: `m1`, `m2`, ... */
export function numbered(prefix: string, from: number, to: number): string[] {
  return range(from, to).map((i) => `${prefix}${i}`);
}

/**
 * A stored chat message with seq `seq` and text `text`, its time derived
 * from the seq so that a store that mixed up rows would show it.
 */
export function rec(seq: number, text = `m${seq}`): ChatRecord {
  return { seq, from: "a", time: seq * 1000, text };
}

/** The request line and headers of an upgrade, without any protocol offer. */
export function upgradeHead(
  port: number,
  path: string,
  extra: string[],
): string[] {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...extra,
  ];
}

/**
 * A peer that speaks just enough WebSocket over raw TCP to complete the
 * handshake, then does whatever the test wants: never read, vanish, etc.
 */
export async function rawHandshake(
  port: number,
  path: string,
  protocol?: string,
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const request = [
    ...upgradeHead(
      port,
      path,
      protocol ? [`Sec-WebSocket-Protocol: ${protocol}`] : [],
    ),
    "",
    "",
  ].join("\r\n");
  await conn.write(new TextEncoder().encode(request));
  // Read only the response head, byte by byte, so no frame data is consumed.
  const head: number[] = [];
  const one = new Uint8Array(1);
  while (!endsWithBlankLine(head)) {
    const n = await conn.read(one);
    if (n === null) throw new Error("connection closed during handshake");
    head.push(one[0]);
  }
  const status = new TextDecoder().decode(new Uint8Array(head)).split(" ")[1];
  if (status !== "101") throw new Error(`handshake answered ${status}`);
  return conn;
}

/** The status line and headers of a response read off a raw connection. */
export interface RawResponse {
  /** The status code, e.g. 101. */
  status: number;
  /** The HTTP version of the status line, e.g. `HTTP/1.1`. */
  version: string;
  /** Header fields by lower-case name; repeated fields joined with ", ". */
  headers: Map<string, string>;
}

/**
 * Sends `head` (request line and header lines, without the blank line) over
 * a fresh TCP connection and reads the response head. For requests fetch
 * cannot make: repeated headers, odd spacing, HTTP/1.0. The connection is
 * returned open (the test closes it) so an upgraded socket stays usable.
 */
export async function rawRequest(
  port: number,
  head: string[],
): Promise<{ conn: Deno.TcpConn; response: RawResponse }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode([...head, "", ""].join("\r\n")),
    );
    return { conn, response: await readResponseHead(conn) };
  } catch (err) {
    conn.close();
    throw err;
  }
}

/** Reads a response head byte by byte, so no frame data is consumed. */
export async function readResponseHead(conn: Deno.Conn): Promise<RawResponse> {
  const head: number[] = [];
  const one = new Uint8Array(1);
  while (!endsWithBlankLine(head)) {
    const n = await within(conn.read(one), "response head");
    if (n === null) throw new Error("connection closed during the response");
    head.push(one[0]);
  }
  const [statusLine, ...fields] = new TextDecoder().decode(new Uint8Array(head))
    .trimEnd().split("\r\n");
  const headers = new Map<string, string>();
  for (const field of fields) {
    const colon = field.indexOf(":");
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    const had = headers.get(name);
    headers.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  const [version, status] = statusLine.split(" ");
  return { status: Number(status), version, headers };
}

/** One frame read off a raw connection (server frames are unmasked). */
export interface RawFrame {
  /** The frame's opcode: 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  opcode: number;
  /** The payload bytes. */
  payload: Uint8Array;
}

/** Reads exactly `n` bytes, or null at a clean end of stream. */
async function readExactly(
  conn: Deno.Conn,
  n: number,
): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const read = await within(conn.read(out.subarray(got)), "frame bytes");
    if (read === null) return null;
    got += read;
  }
  return out;
}

/** Reads the next frame the server sent, or null when the stream ended. */
export async function readFrame(conn: Deno.Conn): Promise<RawFrame | null> {
  const head = await readExactly(conn, 2);
  if (head === null) return null;
  let length = head[1] & 0x7f;
  if (length === 126) {
    const ext = await readExactly(conn, 2);
    if (ext === null) return null;
    length = new DataView(ext.buffer).getUint16(0);
  } else if (length === 127) {
    const ext = await readExactly(conn, 8);
    if (ext === null) return null;
    length = Number(new DataView(ext.buffer).getBigUint64(0));
  }
  const payload = await readExactly(conn, length);
  if (payload === null) return null;
  return { opcode: head[0] & 0x0f, payload };
}

/**
 * A client frame (masked, as RFC 6455 requires), `fin` false for the first
 * parts of a fragmented message.
 */
export function clientFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
): Uint8Array {
  const n = payload.byteLength;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + lengthBytes + 4 + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  const view = new DataView(out.buffer);
  if (lengthBytes === 0) out[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    out[1] = 0x80 | 126;
    view.setUint16(2, n);
  } else {
    out[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(n));
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const at = 2 + lengthBytes;
  out.set(mask, at);
  for (let i = 0; i < n; i++) out[at + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

function endsWithBlankLine(b: number[]): boolean {
  const n = b.length;
  return n >= 4 && b[n - 4] === 13 && b[n - 3] === 10 && b[n - 2] === 13 &&
    b[n - 1] === 10;
}

/**
 * Decodes a child's output stream and hands each chunk of text to `add`;
 * resolves when the stream ends.
 */
export function collectText(
  stream: ReadableStream<Uint8Array>,
  add: (text: string) => void,
): Promise<void> {
  return stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void add(chunk) }),
  );
}

/** A `main.ts` subprocess and its announced address. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  port: number;
  http: string;
  ws: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Sends `signal` (if still running) and waits for the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * Runs `main.ts` with `args` (port 0 unless given) and waits for its
 * `listening on` line. `denoFlags` replace the default permissions.
 */
export async function spawnServer(
  args: string[],
  denoFlags = ["--allow-net", "--allow-env=HUBBUB_*,DENO_USE_WRITEV"],
): Promise<ServerProcess> {
  // In-process servers of this test run set DENO_USE_WRITEV for this
  // process; the child must show what it does on its own.
  const env = Deno.env.toObject();
  delete env.DENO_USE_WRITEV;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...denoFlags,
      MAIN,
      "--hostname",
      "127.0.0.1",
      // Port 0 unless given: 8080 may be anyone's on a shared machine.
      ...(args.some((a) => a.startsWith("--port")) ? [] : ["--port", "0"]),
      ...args,
    ],
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  const errDone = collectText(child.stderr, (c) => err += c);
  let out = "";
  const portFound = Promise.withResolvers<number>();
  const outDone = collectText(child.stdout, (chunk) => {
    out += chunk;
    const m = out.match(/listening on https?:\/\/[^:]+:(\d+)\//);
    if (m) portFound.resolve(Number(m[1]));
  });
  const status = child.status;
  status.then((s) =>
    portFound.reject(new Error(`server exited ${s.code}: ${err}`))
  );
  let port: number;
  try {
    port = await within(portFound.promise, "listening line");
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch (killErr) {
      // Already exited: `e` says why.
      if (!(killErr instanceof TypeError)) throw killErr;
    }
    await status;
    await Promise.all([errDone, outDone]);
    throw e;
  }
  let stopped: Promise<Deno.CommandStatus> | null = null;
  return {
    child,
    port,
    http: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    stderr: () => err,
    stop(signal: Deno.Signal = "SIGTERM") {
      stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch (e) {
          if (!(e instanceof TypeError)) throw e;
        }
        const s = await within(status, "server exit");
        await Promise.all([errDone, outDone]);
        return s;
      })();
      return stopped;
    },
  };
}

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Never-reading peers with a small receive buffer (tests/stuck_peers.py). */
export interface StuckPeers {
  /** Runs one command of the script (`send TEXT`, `close`) on every peer. */
  command(line: string): Promise<void>;
  /** Closes every peer's connection and waits for the script to exit. */
  stop(): Promise<void>;
}

const STUCK_PEERS = new URL("./stuck_peers.py", import.meta.url).pathname;

/**
 * Whether `python3` can run the stuck-peer script; tests that need it skip
 * with this reason printed when it cannot.
 */
export async function python3Missing(): Promise<string | null> {
  try {
    const { success } = await new Deno.Command("python3", {
      args: ["-c", "import socket"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? null : "python3 cannot import socket";
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "python3 is not installed";
    throw err;
  }
}

/**
 * Opens `count` never-reading WebSocket peers to `path` from a python3
 * subprocess that sets a 4 KiB SO_RCVBUF (Deno.connect cannot), so the
 * kernel does not absorb what the server sends them.
 */
export async function stuckPeers(
  port: number,
  path: string,
  count: number,
  protocol?: string,
): Promise<StuckPeers> {
  const child = new Deno.Command("python3", {
    args: [STUCK_PEERS, String(port), path, String(count), protocol ?? ""]
      .filter((a) => a !== ""),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await within(lines.read(), "stuck peers");
      if (done) throw new Error("stuck_peers.py exited");
      buffered += value;
    }
    const at = buffered.indexOf("\n");
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    return line;
  };
  const expect = async (want: string) => {
    const line = await nextLine();
    if (line !== want) throw new Error(`stuck_peers.py said "${line}"`);
  };
  let stopped: Promise<void> | null = null;
  const stop = () =>
    stopped ??= (async () => {
      await stdin.close().catch(() => {});
      await within(child.status, "stuck_peers.py exit");
      await lines.cancel();
    })();
  try {
    await expect("ready");
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    async command(line: string) {
      await stdin.write(new TextEncoder().encode(line + "\n"));
      await expect("done");
    },
    stop,
  };
}

/** A certificate for 127.0.0.1 and localhost, and its key, in a temp dir. */
export async function selfSigned(): Promise<
  { dir: string; cert: string; key: string }
> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-tls-" });
  // Removed here on failure: the caller only cleans up what it was given.
  try {
    const cert = `${dir}/cert.pem`;
    const key = `${dir}/key.pem`;
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        // A leaf, not a CA, so that a client can trust it as it is.
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        "openssl failed: " + new TextDecoder().decode(out.stderr),
      );
    }
    return { dir, cert, key };
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
}
