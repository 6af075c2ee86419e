/**
 * What a socket's unsent frames really hold. `bufferedAmount` counts the
 * payload bytes Deno has not written yet, but each queued frame also holds a
 * task and its state in Deno, about a kilobyte that `bufferedAmount` does not
 * show: a peer that stops reading while it is sent 64-byte messages one frame
 * at a time pinned 6.9 MB of server memory under a 1 MiB limit. Judging by
 * payload plus {@link FRAME_OVERHEAD} per queued frame keeps what an evicted
 * peer pins near the limit whatever the frame size.
 *
 * Reading `bufferedAmount` is a native call; made before every send it was
 * one of the two calls a delivery cost. Between readings, what was sent
 * since the last one bounds the queue from above, so the socket is read only
 * when that bound could pass the limit: a reader that keeps up is read about
 * once in {@link MAX_UNREAD_BATCHES} sends, a slow one before every send as
 * before, and every eviction decision is the one a reading would give.
 *
 * @module
 */

/**
 * Server memory a queued frame holds beyond its payload, in bytes: measured
 * (tests/eviction_test.ts) as the RSS per never-reading peer sent 64-byte
 * messages, less the payload, over the frames it was sent. Rounded up.
 */
export const FRAME_OVERHEAD = 1024;

/**
 * Batches recorded between two readings of `bufferedAmount` at most: keeps
 * the records a reader that keeps up leaves behind short (they are dropped
 * only at a reading), at one native call per this many sends.
 */
export const MAX_UNREAD_BATCHES = 64;

/**
 * The frames a socket was sent that may still be queued: one record per
 * send call batch (a hub visit, an echo), each with the running total of
 * payload bytes at its end. Given `bufferedAmount`, every batch whose end is
 * past what was written is still (at least partly) queued. Batches count
 * whole, so the estimate errs high by at most one batch's frames.
 */
export class InFlight {
  /** Payload bytes ever sent. */
  #sent = 0;
  /** Payload bytes known written at the last reading of `bufferedAmount`. */
  #written = 0;
  /** Running total at the end of each batch not yet known written. */
  #ends: number[] = [];
  /** Frames in each of those batches. */
  #frames: number[] = [];
  /** Index of the oldest batch still counted. */
  #head = 0;
  /** Frames in the batches counted. */
  #queued = 0;

  /** Records a batch of `frames` frames holding `bytes` payload bytes. */
  record(bytes: number, frames: number): void {
    this.#sent += bytes;
    this.#ends.push(this.#sent);
    this.#frames.push(frames);
    this.#queued += frames;
  }

  /** Frames that may still be queued when `buffered` bytes are unsent. */
  frames(buffered: number): number {
    const written = this.#sent - buffered;
    this.#written = written;
    while (
      this.#head < this.#ends.length && this.#ends[this.#head] <= written
    ) {
      this.#queued -= this.#frames[this.#head++];
    }
    if (this.#head === this.#ends.length) {
      // The usual case at every visit of a member that keeps up: reuse the
      // arrays rather than allocate new ones.
      this.#ends.length = 0;
      this.#frames.length = 0;
      this.#head = 0;
    } else if (this.#head > 64 && this.#head * 2 > this.#ends.length) {
      this.#ends = this.#ends.slice(this.#head);
      this.#frames = this.#frames.slice(this.#head);
      this.#head = 0;
    }
    return this.#queued;
  }

  /** Memory the socket's queue holds when `buffered` bytes are unsent. */
  pinned(buffered: number): number {
    return buffered + this.frames(buffered) * FRAME_OVERHEAD;
  }

  /**
   * Whether `socket`'s queue holds more than `limit` bytes, by
   * {@link pinned}. Its `bufferedAmount` is read only when the bytes and
   * frames sent since the last reading could be over `limit` (nothing
   * written since), or after {@link MAX_UNREAD_BATCHES} batches.
   */
  exceeds(socket: { readonly bufferedAmount: number }, limit: number): boolean {
    const unread = this.#ends.length - this.#head;
    const bound = this.#sent - this.#written + this.#queued * FRAME_OVERHEAD;
    if (unread < MAX_UNREAD_BATCHES && bound <= limit) return false;
    return this.pinned(socket.bufferedAmount) > limit;
  }
}
