import assert from "node:assert/strict";
import type { ChatRecord } from "../protocol.ts";
import { RelayWindow } from "../relay_window.ts";

const rec = (seq: number): ChatRecord => ({
  seq,
  from: "a",
  time: 0,
  text: `m${seq}`,
});
const seqs = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => rec(from + i));

Deno.test("relay window: keeps the newest N under the relay's epoch", () => {
  const w = new RelayWindow(3);
  w.reset("r", "e1", 5, seqs(1, 5));
  assert.deepEqual(w.read("r", undefined, undefined).records, seqs(3, 5));
  assert.equal(w.epoch("r"), "e1");
  w.append("r", rec(6));
  assert.equal(w.lastSeq("r"), 6);
  assert.deepEqual(w.read("r", 4, "e1"), {
    records: seqs(5, 6),
    gap: false,
    epoch: "e1",
  });
  // Another epoch's position means nothing here: all kept, flagged.
  assert.deepEqual(w.read("r", 4, "e0"), {
    records: seqs(4, 6),
    gap: true,
    epoch: "e1",
  });
  assert.equal(w.size(), 3);
  w.drop("r");
  assert.equal(w.size(), 0);
  assert.equal(w.lastSeq("r"), 0);
});

Deno.test("relay window: older records are taken only when they end where it begins", () => {
  const w = new RelayWindow(3);
  w.reset("r", "e1", 10, seqs(8, 10));
  assert.equal(w.oldest("r"), 8);
  assert.equal(w.prepend("r", seqs(3, 6)), false, "a hole at 7");
  assert.equal(w.prepend("r", seqs(3, 7)), true);
  assert.deepEqual(w.read("r", 2, "e1"), {
    records: seqs(3, 10),
    gap: false,
    epoch: "e1",
  });
  // The next append trims back to the window's size.
  w.append("r", rec(11));
  assert.deepEqual(w.read("r", undefined, undefined).records, seqs(9, 11));
  assert.equal(w.size(), 3);
});

Deno.test("relay window: records for a room it does not hold are ignored", () => {
  const w = new RelayWindow(3);
  w.append("nowhere", rec(1));
  assert.equal(w.size(), 0);
  assert.equal(w.lastSeq("nowhere"), 0);
});
