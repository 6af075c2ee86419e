import assert from "node:assert/strict";
import { RelayWindow } from "../relay_window.ts";
import { range, rec } from "./helpers.ts";

/** The records with seqs `from` to `to`, both included. */
const recs = (from: number, to: number) => range(from, to).map((i) => rec(i));

Deno.test("relay window: keeps the newest N under the relay's epoch", () => {
  const w = new RelayWindow(3);
  w.reset("r", "e1", 5, recs(1, 5));
  assert.deepEqual(w.read("r", undefined, undefined).records, recs(3, 5));
  assert.equal(w.epoch("r"), "e1");
  w.append("r", rec(6));
  assert.equal(w.lastSeq("r"), 6);
  assert.deepEqual(w.read("r", 4, "e1"), {
    records: recs(5, 6),
    rest: [],
    gap: false,
    epoch: "e1",
  });
  // Another epoch's position means nothing here: all kept, flagged.
  assert.deepEqual(w.read("r", 4, "e0"), {
    records: recs(4, 6),
    rest: [],
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
  w.reset("r", "e1", 10, recs(8, 10));
  assert.equal(w.oldest("r"), 8);
  assert.equal(w.prepend("r", recs(3, 6)), false, "a hole at 7");
  assert.equal(w.prepend("r", recs(3, 7)), true);
  // The welcome holds a window's worth; the rest follows it as messages.
  assert.deepEqual(w.read("r", 2, "e1"), {
    records: recs(3, 5),
    rest: recs(6, 10),
    gap: false,
    epoch: "e1",
  });
  // The next append trims back to the window's size.
  w.append("r", rec(11));
  assert.deepEqual(w.read("r", undefined, undefined).records, recs(9, 11));
  assert.equal(w.size(), 3);
});

Deno.test("relay window: records for a room it does not hold are ignored", () => {
  const w = new RelayWindow(3);
  w.append("nowhere", rec(1));
  assert.equal(w.size(), 0);
  assert.equal(w.lastSeq("nowhere"), 0);
});

Deno.test("relay window: stores nothing itself; its scrollback serves the window", () => {
  const w = new RelayWindow(3);
  w.reset("r", "e1", 10, recs(8, 10));
  assert.equal(w.commit(), null, "Redis stored every record already");
  assert.equal(w.stored(), null);
  assert.deepEqual(w.before("r", 10, 5), {
    epoch: "e1",
    records: recs(8, 9),
    more: true,
  });
  assert.deepEqual(w.before("r", 8, 5), {
    epoch: "e1",
    records: [],
    more: true,
  });
  w.close();
});
