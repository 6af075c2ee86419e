import assert from "node:assert/strict";
import { PolledMap } from "../polled_map.ts";
import { until } from "./helpers.ts";

// The op sanitizer fails a test that ends with an interval still set, so
// each test below also checks that the timer stopped.

Deno.test("polled map: polls while it holds entries, a poll may delete them", async () => {
  let polls = 0;
  const map = new PolledMap<string, number>(5, () => {
    polls++;
    for (const [key, left] of map) {
      if (left === 0) map.delete(key);
      else map.set(key, left - 1);
    }
  });
  map.set("a", 2);
  map.set("b", 0);
  await until(() => map.size === 0, "both entries polled away");
  assert.ok(polls >= 3, String(polls));
});

Deno.test("polled map: clear stops the timer, a later set starts it again", async () => {
  let polls = 0;
  const map = new PolledMap<string, number>(5, () => polls++);
  map.set("a", 1);
  map.clear();
  map.set("b", 1);
  await until(() => polls > 0, "a poll after clear and set");
  assert.equal(map.delete("b"), true);
  assert.equal(map.delete("b"), false);
});

Deno.test("polled map: after stop the entries stay and are never polled", async () => {
  let polls = 0;
  const map = new PolledMap<string, number>(5, () => polls++);
  map.set("a", 1);
  map.stop();
  map.set("b", 2);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(polls, 0);
  assert.deepEqual([...map], [["a", 1], ["b", 2]]);
  assert.equal(map.has("a"), true);
  assert.equal(map.get("b"), 2);
});
