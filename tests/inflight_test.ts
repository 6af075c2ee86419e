import assert from "node:assert/strict";
import { InFlight, MAX_UNREAD_BATCHES } from "../inflight.ts";

/** A socket's queue as `InFlight` sees it, counting the readings. */
class Queue {
  sent = 0;
  written = 0;
  reads = 0;
  get bufferedAmount(): number {
    this.reads++;
    return this.sent - this.written;
  }
}

const LIMIT = 1 << 20;

Deno.test("inflight: a reader that keeps up is read once per MAX_UNREAD_BATCHES sends", () => {
  const queue = new Queue();
  const inFlight = new InFlight();
  const sends = 10 * MAX_UNREAD_BATCHES;
  for (let i = 0; i < sends; i++) {
    assert.equal(inFlight.exceeds(queue, LIMIT), false);
    inFlight.record(100, 1);
    queue.sent += 100;
    queue.written = queue.sent;
  }
  assert.equal(queue.reads, sends / MAX_UNREAD_BATCHES - 1);
});

Deno.test("inflight: a reader that stops is judged as if read before every send", () => {
  for (const [bytes, frames] of [[64, 1], [2000, 3], [300_000, 1]]) {
    const queue = new Queue();
    const inFlight = new InFlight();
    const reference = new InFlight();
    let evictedAt = -1;
    for (let i = 0; i < 5000 && evictedAt < 0; i++) {
      const expected = reference.pinned(queue.sent - queue.written) > LIMIT;
      assert.equal(inFlight.exceeds(queue, LIMIT), expected, `send ${i}`);
      if (expected) evictedAt = i;
      inFlight.record(bytes, frames);
      reference.record(bytes, frames);
      queue.sent += bytes;
      // It read the first 10 KB and nothing more.
      queue.written = Math.min(queue.sent, 10_000);
    }
    assert.ok(evictedAt > 0, `${bytes}-byte batches were never judged over`);
  }
});

Deno.test("inflight: one batch larger than the limit is judged at the next send", () => {
  const queue = new Queue();
  const inFlight = new InFlight();
  assert.equal(inFlight.exceeds(queue, LIMIT), false);
  assert.equal(queue.reads, 0);
  inFlight.record(LIMIT + 1, 1);
  queue.sent += LIMIT + 1;
  assert.equal(inFlight.exceeds(queue, LIMIT), true);
  assert.equal(queue.reads, 1);
  queue.written = queue.sent;
  assert.equal(inFlight.exceeds(queue, LIMIT), false);
});
