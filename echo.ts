/**
 * The `/echo` socket of the seed's echo server: every frame goes back
 * unchanged, text as text and binary as binary. It shares the chat
 * sockets' accounting (the connection cap, eviction of a peer that does not
 * read what it asked for) but nothing of the hub.
 *
 * @module
 */

import type { EvictionReason } from "./metrics.ts";
import { exceedsBytes } from "./protocol.ts";

/** Limits of one echo socket. */
export interface EchoLimits {
  /** Largest frame echoed; larger ones close 1009. */
  maxEchoBytes: number;
  /** Unsent bytes before the peer is evicted as a slow consumer. */
  maxBufferedBytes: number;
}

/** How an echo socket reports its end to the instance that owns it. */
export interface EchoTracking {
  /** Called when the socket has closed, with its close code. */
  untrack(socket: WebSocket, code: number): void;
  /** Counts, logs and closes a socket the server gave up on. */
  evictSocket(
    socket: WebSocket,
    reason: EvictionReason,
    code: number,
    text: string,
  ): void;
}

/** Echoes every frame `socket` receives until it closes. */
export function serveEcho(
  socket: WebSocket,
  limits: EchoLimits,
  tracking: EchoTracking,
): void {
  socket.binaryType = "arraybuffer";
  socket.onclose = (ev) => tracking.untrack(socket, ev.code);
  socket.onmessage = (ev: MessageEvent<unknown>) => {
    const data = ev.data;
    if (socket.readyState !== WebSocket.OPEN) return;
    if (typeof data !== "string" && !(data instanceof ArrayBuffer)) return;
    const tooBig = typeof data === "string"
      ? exceedsBytes(data, limits.maxEchoBytes)
      : data.byteLength > limits.maxEchoBytes;
    if (tooBig) {
      socket.close(1009, "message too big");
    } else if (socket.bufferedAmount > limits.maxBufferedBytes) {
      tracking.evictSocket(socket, "slow_consumer", 1008, "slow consumer");
    } else {
      socket.send(data);
    }
  };
}
