/**
 * Why a WebSocket could not be opened. Deno's `WebSocket` reports a failed
 * handshake as a bare "NetworkError" (at best "Invalid status code: 403",
 * never the server's reason), yet `hubbub connect` must tell "nothing
 * listening" and "TLS" (exit 3) from "refused at the upgrade" (exit 4, with
 * the status and reason). So after a failure the client repeats the
 * handshake once by hand over `Deno.connect`/`Deno.connectTls`, whose errors
 * are typed, and reads the server's answer: its status line and the start
 * of its body.
 *
 * Probing only after a failure keeps the happy path to one connection; the
 * cost is a second request to a server that refused the first.
 *
 * @module
 */

/** What the second attempt found. */
export type ProbeResult =
  /** No HTTP exchange: connection refused, name lookup or TLS failed. */
  | { kind: "unreachable"; message: string }
  /** The server answered the upgrade with an HTTP status other than 101. */
  | { kind: "refused"; status: number; statusText: string; reason: string }
  /** The server accepted this time (the first failure was transient or ours). */
  | { kind: "accepted" }
  /** The connection opened but no HTTP answer came in time. */
  | { kind: "no_answer"; message: string };

/** Largest response head read; a real one is a few hundred bytes. */
const MAX_HEAD_BYTES = 16 << 10;
/** Body bytes kept for the reason: hubbub's reasons are one short line. */
const MAX_REASON_BYTES = 512;
/** Reason characters printed, so a large error page cannot flood stderr. */
const MAX_REASON_CHARS = 200;
/** How long the whole probe may take. */
export const PROBE_TIMEOUT_MS = 5_000;

const HEAD_END = "\r\n\r\n";
/** Line breaks and other control characters in a reason become one space. */
// deno-lint-ignore no-control-regex
const CONTROL_RUN = /[\u0000-\u001f\u007f]+/g;

/**
 * Repeats the opening handshake of `url` with `protocols` over a raw TCP
 * (or TLS, for `wss:`) connection, and reports what happened.
 */
export async function probeUpgrade(
  url: URL,
  protocols: string[],
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<ProbeResult> {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const tls = url.protocol === "wss:";
  const port = url.port === "" ? (tls ? 443 : 80) : Number(url.port);
  const where = `${url.hostname}:${port}`;
  let conn: Deno.Conn;
  try {
    conn = tls
      ? await Deno.connectTls({ hostname, port })
      : await Deno.connect({ hostname, port });
  } catch (err) {
    return { kind: "unreachable", message: `${where}: ${describe(err)}` };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, timeoutMs);
  try {
    if (tls) {
      // Deno.connectTls only connects; the handshake, where certificates
      // are checked, happens here.
      try {
        await (conn as Deno.TlsConn).handshake();
      } catch (err) {
        return {
          kind: "unreachable",
          message: `${where}: TLS handshake failed: ${describe(err)}`,
        };
      }
    }
    await writeAll(conn, handshakeRequest(url, protocols));
    const answer = await readAnswer(conn);
    if (answer === null) {
      return {
        kind: "no_answer",
        message: `${where} closed the connection without an HTTP answer`,
      };
    }
    if (answer.status === 101) return { kind: "accepted" };
    return { kind: "refused", ...answer };
  } catch (err) {
    const message = timedOut
      ? `no HTTP answer within ${timeoutMs} ms`
      : describe(err);
    return { kind: "no_answer", message: `${where}: ${message}` };
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
}

/** A readable one-line cause for a connect or TLS error. */
function describe(err: unknown): string {
  if (err instanceof Deno.errors.ConnectionRefused) {
    return "connection refused (nothing listening)";
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/lookup address/i.test(message)) return `name lookup failed: ${message}`;
  return message.split("\n")[0];
}

/** The opening handshake as `new WebSocket(url, protocols)` would send it. */
function handshakeRequest(url: URL, protocols: string[]): string {
  const key = btoa(
    String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
  );
  return [
    `GET ${url.pathname}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...(protocols.length > 0
      ? [`Sec-WebSocket-Protocol: ${protocols.join(", ")}`]
      : []),
    "",
    "",
  ].join("\r\n");
}

async function writeAll(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) {
    off += await conn.write(bytes.subarray(off));
  }
}

/**
 * Reads the status line and, for a refusal, the start of the body, which is
 * where hubbub (like most servers) puts the reason. Null when the peer
 * closes before a whole head.
 */
async function readAnswer(
  conn: Deno.Conn,
): Promise<{ status: number; statusText: string; reason: string } | null> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(4096);
  let text = "";
  let headEnd = -1;
  while (headEnd < 0) {
    if (text.length > MAX_HEAD_BYTES) return null;
    const n = await conn.read(buf);
    if (n === null) return null;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    headEnd = text.indexOf(HEAD_END);
  }
  const head = text.slice(0, headEnd);
  const m = head.match(/^HTTP\/1\.[01] (\d{3}) ?([^\r\n]*)/);
  if (!m) return null;
  const status = Number(m[1]);
  if (status === 101) return { status, statusText: m[2], reason: "" };
  let body = text.slice(headEnd + HEAD_END.length);
  const lengthHeader = head.match(/\r\ncontent-length:\s*(\d+)/i);
  if (lengthHeader) {
    const want = Math.min(Number(lengthHeader[1]), MAX_REASON_BYTES);
    try {
      while (new TextEncoder().encode(body).length < want) {
        const n = await conn.read(buf);
        if (n === null) break;
        body += decoder.decode(buf.subarray(0, n), { stream: true });
      }
    } catch (err) {
      // The probe's deadline closed the connection: the status is known,
      // the reason is what came in time.
      if (
        !(err instanceof Deno.errors.BadResource ||
          err instanceof Deno.errors.Interrupted)
      ) throw err;
    }
  } else if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    // What came with the head; a reason is a courtesy, not worth a wait.
    body = dechunk(body);
  }
  const reason = body.replace(CONTROL_RUN, " ").trim()
    .slice(0, MAX_REASON_CHARS);
  return { status, statusText: m[2], reason };
}

/**
 * The data of the whole chunks at the start of a chunked body (sizes are
 * bytes, taken here as characters: exact for the ASCII reasons servers send).
 */
function dechunk(raw: string): string {
  let data = "";
  let rest = raw;
  for (;;) {
    const m = rest.match(/^([0-9a-fA-F]+)[^\r\n]*\r\n/);
    if (!m) return data;
    const size = parseInt(m[1], 16);
    if (size === 0) return data;
    rest = rest.slice(m[0].length);
    data += rest.slice(0, size);
    rest = rest.slice(size).replace(/^\r\n/, "");
  }
}
