/**
 * Process-wide counters, rendered in the Prometheus text exposition format.
 * Plain number fields rather than a metrics library: the hub bumps them on
 * its hot path, once per send, so they must cost an addition.
 *
 * @module
 */

import { AUTH_FAILURE_REASONS, type AuthFailureReason } from "./auth.ts";

/** Why a client was removed by the server rather than by its own choice. */
export type EvictionReason = "slow_consumer" | "idle_timeout" | "rate_limit";

/** The counters of one hubbub instance. */
export class Metrics {
  /** Chat messages accepted from clients. */
  messagesReceived = 0;
  /** Chat messages handed to members (one message to one member counts 1). */
  messagesDelivered = 0;
  /** WebSocket frames sent to chat members. */
  framesOut = 0;
  /** UTF-8 bytes of chat frames sent. */
  bytesOut = 0;
  /** Messages refused by the rate limit. */
  rateLimited = 0;
  /** Upgrades refused because of `--max-connections`. */
  rejectedConnections = 0;
  /** Chat messages accepted but not delivered because storing them failed. */
  messagesNotStored = 0;
  /** History commits (or trims) that failed. */
  historyWriteFailures = 0;
  /** Reads of stored history that failed. */
  historyReadFailures = 0;
  /** History commits by duration: counts per bucket of {@link WRITE_BUCKETS}. */
  readonly historyWriteBuckets: number[] = WRITE_BUCKETS.map(() => 0);
  /** History commits made. */
  historyWrites = 0;
  /** Seconds spent in history commits in all. */
  historyWriteSeconds = 0;
  /** Frames read from sockets being let go, and dropped unread. */
  evictedFramesDiscarded = 0;
  /** Upgrades refused by auth, by reason. */
  readonly authFailures = new Map<AuthFailureReason, number>();
  /** Evictions by reason. */
  readonly evictions = new Map<EvictionReason, number>();
  /** Socket closes by close code (codes a peer may invent count as "other"). */
  readonly closes = new Map<string, number>();
  readonly #started = performance.now();

  /** Seconds since the instance was created. */
  uptimeSeconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** Counts one eviction. */
  evicted(reason: EvictionReason): void {
    this.evictions.set(reason, (this.evictions.get(reason) ?? 0) + 1);
  }

  /** Counts one history commit that took `seconds`. */
  historyWrite(seconds: number): void {
    this.historyWrites++;
    this.historyWriteSeconds += seconds;
    for (let i = 0; i < WRITE_BUCKETS.length; i++) {
      if (seconds <= WRITE_BUCKETS[i]) {
        this.historyWriteBuckets[i]++;
        return;
      }
    }
  }

  /** Counts one upgrade refused by auth. */
  authFailed(reason: AuthFailureReason): void {
    this.authFailures.set(reason, (this.authFailures.get(reason) ?? 0) + 1);
  }

  /** Counts one closed socket. */
  closed(code: number): void {
    // Peers choose their close codes; one series per code they can invent
    // would let any client grow the exposition without bound.
    const label = code >= 1000 && code <= 1015 || code === 0
      ? String(code)
      : "other";
    this.closes.set(label, (this.closes.get(label) ?? 0) + 1);
  }

  /** Prometheus text exposition; `gauges` are read from their owners at scrape time. */
  render(
    gauges: {
      connections: number;
      rooms: number;
      historyMessages: number;
      evictedUnclosed: number;
      /** Rows of history on disk; null without `--data`. */
      historyStored?: number | null;
      evictedBytes: number;
      /** The Redis link, when the instance uses one. */
      redis?: { up: boolean; reconnects: number; refused: number };
    },
  ): string {
    const out: string[] = [];
    // Each sample is what follows the name (labels, or a histogram
    // series' suffix) and its value.
    const metric = (
      name: string,
      type: "counter" | "gauge" | "histogram",
      help: string,
      samples: [string, number][],
    ) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) {
        out.push(`${name}${labels} ${value}`);
      }
    };
    metric(
      "hubbub_connections",
      "gauge",
      "WebSocket connections being served (not those being let go).",
      [["", gauges.connections]],
    );
    metric("hubbub_rooms", "gauge", "Rooms with at least one member.", [[
      "",
      gauges.rooms,
    ]]);
    metric(
      "hubbub_messages_received_total",
      "counter",
      "Chat messages accepted from clients.",
      [["", this.messagesReceived]],
    );
    metric(
      "hubbub_messages_delivered_total",
      "counter",
      "Chat messages delivered (one message to one member counts 1).",
      [["", this.messagesDelivered]],
    );
    metric("hubbub_frames_out_total", "counter", "Chat frames sent.", [[
      "",
      this.framesOut,
    ]]);
    metric("hubbub_bytes_out_total", "counter", "Bytes of chat frames sent.", [[
      "",
      this.bytesOut,
    ]]);
    metric(
      "hubbub_evictions_total",
      "counter",
      "Clients removed by the server, by reason.",
      (["slow_consumer", "idle_timeout", "rate_limit"] as const).map((r) => [
        `{reason="${r}"}`,
        this.evictions.get(r) ?? 0,
      ]),
    );
    metric(
      "hubbub_closes_total",
      "counter",
      "Closed sockets, by close code.",
      [...this.closes].sort((a, b) => a[0] < b[0] ? -1 : 1).map(([code, n]) => [
        `{code="${code}"}`,
        n,
      ]),
    );
    metric(
      "hubbub_rate_limited_total",
      "counter",
      "Messages refused by the rate limit.",
      [["", this.rateLimited]],
    );
    metric(
      "hubbub_rejected_connections_total",
      "counter",
      "Upgrades refused with 503 by --max-connections, --max-connections-per-ip or load shedding.",
      [["", this.rejectedConnections]],
    );
    metric(
      "hubbub_auth_failures_total",
      "counter",
      "Upgrades refused by token auth, by reason.",
      AUTH_FAILURE_REASONS.map((r) => [
        `{reason="${r}"}`,
        this.authFailures.get(r) ?? 0,
      ]),
    );
    metric(
      "hubbub_evicted_unclosed_sockets",
      "gauge",
      "Sockets evicted or closed by the server that Deno has not released.",
      [["", gauges.evictedUnclosed]],
    );
    metric(
      "hubbub_evicted_unclosed_bytes",
      "gauge",
      "Memory their unsent frames hold (payload and per-frame overhead).",
      [["", gauges.evictedBytes]],
    );
    metric(
      "hubbub_evicted_frames_discarded_total",
      "counter",
      "Frames read from sockets being let go, dropped unread.",
      [["", this.evictedFramesDiscarded]],
    );
    metric(
      "hubbub_history_messages",
      "gauge",
      "Messages held in room history.",
      [["", gauges.historyMessages]],
    );
    if (gauges.redis) {
      metric(
        "hubbub_redis_up",
        "gauge",
        "1 while both Redis connections (commands, subscriber) are ready.",
        [["", gauges.redis.up ? 1 : 0]],
      );
      metric(
        "hubbub_redis_reconnects_total",
        "counter",
        "Redis connections re-established after they were lost.",
        [["", gauges.redis.reconnects]],
      );
      metric(
        "hubbub_redis_refused_total",
        "counter",
        "Messages refused to their senders because Redis did not take them.",
        [["", gauges.redis.refused]],
      );
    }
    if (gauges.historyStored !== undefined && gauges.historyStored !== null) {
      metric(
        "hubbub_history_stored_messages",
        "gauge",
        "Messages of room history on disk.",
        [["", gauges.historyStored]],
      );
      metric(
        "hubbub_history_write_seconds",
        "histogram",
        "Time of each history commit (one per turn with messages).",
        this.#writeSamples(),
      );
      metric(
        "hubbub_history_write_failures_total",
        "counter",
        "History commits and trims that failed.",
        [["", this.historyWriteFailures]],
      );
      metric(
        "hubbub_history_read_failures_total",
        "counter",
        "Reads of stored history that failed.",
        [["", this.historyReadFailures]],
      );
      metric(
        "hubbub_messages_not_stored_total",
        "counter",
        "Messages refused because storing them failed.",
        [["", this.messagesNotStored]],
      );
    }
    metric("hubbub_uptime_seconds", "gauge", "Seconds since start.", [[
      "",
      Math.round(this.uptimeSeconds() * 1000) / 1000,
    ]]);
    return out.join("\n") + "\n";
  }

  /** The commit latency histogram (`--data`): cumulative buckets, sum, count. */
  #writeSamples(): [string, number][] {
    let cumulative = 0;
    const samples = WRITE_BUCKETS.map((le, i): [string, number] => [
      `_bucket{le="${le}"}`,
      cumulative += this.historyWriteBuckets[i],
    ]);
    samples.push(
      ['_bucket{le="+Inf"}', this.historyWrites],
      ["_sum", this.historyWriteSeconds],
      ["_count", this.historyWrites],
    );
    return samples;
  }
}

/**
 * Upper bounds, in seconds, of the commit latency histogram: a batched
 * commit with `synchronous=NORMAL` is tens of microseconds, an fsync
 * (`--data-sync full`) milliseconds.
 */
const WRITE_BUCKETS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.1,
  1,
];
