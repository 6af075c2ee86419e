/**
 * Structured logging: one line per event, readable text by default or one
 * JSON object per line for log shippers. Only lifecycle events and problems
 * are logged, never one line per chat message.
 *
 * @module
 */

import type { LogFormat } from "./config.ts";

/** Severity of a log line. */
export type LogLevel = "info" | "warn" | "error";

/** Extra fields of a log line; values must be JSON-serialisable. */
export type LogFields = Record<string, string | number | boolean | null>;

/** Writes log lines; the embedding app may supply its own. */
export interface Logger {
  /** Logs one event. */
  log(level: LogLevel, msg: string, fields?: LogFields): void;
}

/** A logger that writes to stderr in the given format. */
export function createLogger(format: LogFormat): Logger {
  return {
    log(level, msg, fields = {}) {
      const time = new Date().toISOString();
      if (format === "json") {
        console.error(JSON.stringify({ time, level, msg, ...fields }));
        return;
      }
      const extra = Object.entries(fields).map(([k, v]) =>
        `${k}=${typeof v === "string" && /\s/.test(v) ? JSON.stringify(v) : v}`
      );
      console.error([time, level.toUpperCase(), msg, ...extra].join(" "));
    },
  };
}

/** A logger that drops everything, for embedders that want silence. */
export const silentLogger: Logger = { log() {} };
