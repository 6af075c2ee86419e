/**
 * A process's resident memory from /proc, shared by the benchmark and the
 * tests that bound the server's memory.
 *
 * @module
 */

/** Resident memory of a process now, and at its peak, in bytes. */
export async function memory(
  pid: number,
): Promise<{ rss: number; peak: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string) => {
    const m = status.match(new RegExp(`${key}:\\s+(\\d+) kB`));
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}
