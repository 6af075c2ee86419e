import assert from "node:assert/strict";
import { DurableHistory } from "../durable_history.ts";
import { silentLogger } from "../log.ts";
import { Metrics } from "../metrics.ts";
import { range, rec, until } from "./helpers.ts";

function open(path: string, window: number, max: number): DurableHistory {
  return new DurableHistory({
    path,
    window,
    max,
    sync: "normal",
    logger: silentLogger,
    metrics: new Metrics(),
  });
}

async function withDb(fn: (path: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-store-" });
  try {
    await fn(`${dir}/h.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("durable history: reopened, a room comes back from its tail with its epoch", () =>
  withDb((path) => {
    const h = open(path, 5, 1000);
    for (let i = 1; i <= 50; i++) h.append("r", rec(i));
    assert.equal(h.commit(), null);
    const epoch = h.read("r", undefined, undefined).epoch;
    h.close();

    const again = open(path, 5, 1000);
    try {
      assert.equal(again.stored(), 50);
      assert.equal(again.size(), 0, "nothing read before a room is used");
      assert.equal(again.lastSeq("r"), 50);
      assert.equal(again.size(), 5, "the tail only");
      const all = again.read("r", undefined, undefined);
      assert.deepEqual(all.records.map((r) => r.seq), range(46, 50));
      assert.equal(all.epoch, epoch);
      // A since older than the window: the first 5 missed in `records`,
      // the rest in `rest`, all from disk and memory together.
      const s = again.read("r", 37, epoch);
      assert.deepEqual(s.records.map((r) => r.seq), range(38, 42));
      assert.deepEqual(s.rest.map((r) => r.seq), range(43, 50));
      assert.equal(s.gap, false);
      assert.deepEqual(s.records[0], rec(38));
      // Another epoch: the position is void.
      const other = again.read("r", 37, "elsewhere");
      assert.equal(other.gap, true);
      assert.deepEqual(other.rest, []);
      // Scrollback across disk and memory.
      const p = again.before("r", 48, 10);
      assert.deepEqual(p.records.map((r) => r.seq), range(38, 47));
      assert.equal(p.more, true);
      assert.equal(again.before("r", 11, 20).more, false);
      assert.deepEqual(
        again.before("r", 11, 20).records.map((r) => r.seq),
        range(1, 10),
      );
      // New records continue the numbering and the epoch.
      again.append("r", rec(51));
      assert.equal(again.commit(), null);
      assert.equal(again.stored(), 51);
    } finally {
      again.close();
    }
  }));

Deno.test("durable history: a lowered --history-max is trimmed in the background", () =>
  withDb(async (path) => {
    const h = open(path, 10, 5000);
    for (let i = 1; i <= 2000; i++) h.append("big", rec(i));
    h.append("small", rec(1));
    assert.equal(h.commit(), null);
    h.close();

    const trimmed = open(path, 10, 100);
    try {
      // Served history never exceeds the limit, even before the trim.
      const page = trimmed.before("big", 2001, 200);
      assert.deepEqual(page.records.map((r) => r.seq), range(1901, 2000));
      assert.equal(page.more, false);
      const old = trimmed.read(
        "big",
        0,
        trimmed.read("big", 0, undefined).epoch,
      );
      assert.equal(old.gap, true);
      assert.equal(old.records.length + old.rest.length, 100);
      await until(() => trimmed.stored() === 101, "trimmed to 100 + 1");
    } finally {
      trimmed.close();
    }
    const reopened = open(path, 10, 100);
    try {
      assert.equal(reopened.stored(), 101);
    } finally {
      reopened.close();
    }
  }));
