/**
 * The `/echo` socket of the seed's echo server: every frame goes back
 * unchanged, text as text and binary as binary. It shares the chat
 * sockets' accounting (the connection cap, eviction of a peer that does not
 * read what it asked for) but nothing of the hub.
 *
 * @module
 */

import type { SocketTracking } from "./connections.ts";
import { InFlight } from "./inflight.ts";
import { utf8Length } from "./protocol.ts";

/** Limits of one echo socket. */
export interface EchoLimits {
  /** Largest frame echoed; larger ones close 1009. */
  maxEchoBytes: number;
  /** Unsent bytes before the peer is evicted as a slow consumer. */
  maxBufferedBytes: number;
}

/** Echoes every frame `socket` receives until it closes. */
export function serveEcho(
  socket: WebSocket,
  limits: EchoLimits,
  tracking: SocketTracking,
): void {
  socket.binaryType = "arraybuffer";
  // One frame per echo: a peer echoing tiny frames it never reads would
  // otherwise pin a kilobyte of Deno's per frame for a byte of payload.
  const inFlight = new InFlight();
  socket.onclose = (ev) => tracking.untrack(socket, ev.code);
  socket.onmessage = (ev: MessageEvent<unknown>) => {
    const data = ev.data;
    if (socket.readyState !== WebSocket.OPEN) return;
    if (tracking.departing(socket)) {
      tracking.discard(socket);
      return;
    }
    if (typeof data !== "string" && !(data instanceof ArrayBuffer)) return;
    // A string has at least as many UTF-8 bytes as UTF-16 units: one too
    // long in units is not measured.
    const bytes = typeof data === "string"
      ? (data.length > limits.maxEchoBytes ? Infinity : utf8Length(data))
      : data.byteLength;
    if (bytes > limits.maxEchoBytes) {
      tracking.closeSocket(socket, 1009, "message too big");
    } else if (inFlight.exceeds(socket, limits.maxBufferedBytes)) {
      tracking.evictSocket(
        socket,
        "slow_consumer",
        1008,
        "slow consumer",
        undefined,
        inFlight,
      );
    } else {
      socket.send(data);
      inFlight.record(bytes, 1);
    }
  };
}
