import assert from "node:assert/strict";
import { MemoryHistory, sliceAfter } from "../history.ts";
import { rec } from "./helpers.ts";

Deno.test("history: keeps the last N per room", () => {
  const h = new MemoryHistory(3);
  for (let i = 1; i <= 5; i++) h.append("r", rec(i));
  assert.equal(h.lastSeq("r"), 5);
  assert.equal(h.size(), 3);
  const all = h.read("r", undefined, undefined);
  assert.deepEqual(all.records.map((r) => r.seq), [3, 4, 5]);
  assert.equal(all.gap, false);
});

Deno.test("history: since within, too old, and beyond", () => {
  const kept = [rec(3), rec(4), rec(5)];
  assert.deepEqual(sliceAfter(kept, 5, 3), {
    records: [rec(4), rec(5)],
    gap: false,
  });
  assert.deepEqual(sliceAfter(kept, 5, 2), { records: kept, gap: false });
  assert.deepEqual(sliceAfter(kept, 5, 1).gap, true);
  assert.deepEqual(sliceAfter(kept, 5, 5), { records: [], gap: false });
  assert.deepEqual(sliceAfter(kept, 5, 9), { records: kept, gap: true });
});

Deno.test("history: past the byte budget, least recently used rooms go first", () => {
  // Each room below counts 256 + 3 × 2066 bytes: three fit in 20,000.
  const h = new MemoryHistory(100, 20_000);
  const big = "x".repeat(1000);
  for (const room of ["r0", "r1", "r2"]) {
    for (let i = 1; i <= 3; i++) h.append(room, rec(i, big));
  }
  // r0 is used again, so r1 is now the least recently used.
  h.read("r0", undefined, undefined);
  const r1Epoch = h.read("r1", undefined, undefined).epoch;
  h.read("r0", undefined, undefined);
  h.read("r2", undefined, undefined);
  for (let i = 1; i <= 3; i++) h.append("r3", rec(i, big));
  assert.equal(h.lastSeq("r1"), 0, "r1 was dropped");
  assert.equal(h.lastSeq("r0"), 3, "r0 was kept");
  assert.equal(h.lastSeq("r2"), 3, "r2 was kept");
  assert.equal(h.lastSeq("r3"), 3);
  assert.equal(h.size(), 9);
  // The dropped room comes back with a new epoch, so old positions are void.
  const again = h.read("r1", 3, r1Epoch);
  assert.notEqual(again.epoch, r1Epoch);
  assert.equal(again.gap, true);
});
