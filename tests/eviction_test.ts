import assert from "node:assert/strict";
import {
  connect,
  python3Missing,
  spawnServer,
  stuckPeers,
  type TestSocket,
  until,
  UPGRADE_HEADERS,
} from "./helpers.ts";

/** A series' value in the server's /metrics, 0 when it is absent. */
async function metric(http: string, series: string): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function health(http: string): Promise<{ connections: number }> {
  return await (await fetch(`${http}/healthz`)).json();
}

/** Status of a fresh upgrade attempt (its body read, nothing left open). */
async function upgradeStatus(http: string): Promise<number> {
  const res = await fetch(`${http}/ws?room=other`, {
    headers: UPGRADE_HEADERS,
  });
  await res.body?.cancel();
  return res.status;
}

function openFds(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

const SLOW = 'hubbub_evictions_total{reason="slow_consumer"}';
const UNCLOSED = "hubbub_evicted_unclosed_sockets";

/**
 * Sends 8 KB messages into `room` until `count` slow consumers are evicted;
 * bounded at 64 MB offered.
 */
async function fillUntilEvicted(
  http: string,
  sender: TestSocket,
  count: number,
): Promise<number> {
  const text = "g".repeat(8000);
  let sent = 0;
  while (await metric(http, SLOW) < count) {
    if (sent >= 8000) throw new Error(`not evicted after ${sent} messages`);
    for (let i = 0; i < 100; i++) sender.send(`${sent++} ${text}`);
    await sender.waitLines(sent);
  }
  return sent;
}

Deno.test("ghost sockets: evicted peers that keep sending stay counted, and count against the cap, until they are gone", async (t) => {
  const missing = await python3Missing();
  if (missing) {
    console.log(`skipped: ${missing}`);
    return;
  }
  const peers = 40;
  const srv = await spawnServer([
    "--rate-limit",
    "0",
    "--max-connections",
    String(peers + 1),
  ]);
  let sender: TestSocket | null = null;
  let stuck: Awaited<ReturnType<typeof stuckPeers>> | null = null;
  try {
    const fdsBefore = openFds(srv.child.pid);
    stuck = await stuckPeers(srv.port, "/ws?room=ghost", peers);
    sender = await connect(`${srv.ws}/ws?room=ghost`);
    const sent = await fillUntilEvicted(srv.http, sender, peers);
    // The evicted peers keep sending: on a closing socket Deno takes a data
    // frame for the end of the connection, though its writes still wait.
    await stuck.command('send {"type":"who"}');
    await stuck.command("send still here");
    await until(
      async () =>
        await metric(srv.http, 'hubbub_closes_total{code="0"}') +
            await metric(srv.http, 'hubbub_closes_total{code="1006"}') +
            await metric(srv.http, "hubbub_evicted_frames_discarded_total") >=
          peers,
      "the server read the evicted peers' frames",
    );
    const held = {
      connections: (await health(srv.http)).connections,
      unclosed: await metric(srv.http, UNCLOSED),
      fds: openFds(srv.child.pid) - fdsBefore,
      status: await upgradeStatus(srv.http),
    };
    console.log(
      `${peers} evicted peers after ${sent} messages of 8 KB, still sending: ` +
        JSON.stringify(held),
    );
    await t.step("served and evicted sockets are counted apart", () => {
      assert.equal(held.connections, 1);
      assert.equal(held.unclosed, peers);
    });
    await t.step("evicted sockets count against --max-connections", () => {
      assert.equal(held.status, 503);
    });
    await stuck.command("close");
    await until(
      async () => await metric(srv.http, UNCLOSED) === 0,
      "evicted sockets released once their peers are gone",
    );
    let fds = 0;
    await until(
      () => (fds = openFds(srv.child.pid) - fdsBefore) <= 2,
      `their file descriptors closed (${fds} more than before)`,
    ).catch((err) => {
      throw new Error(`${err.message}: ${fds} more than before`);
    });
    assert.equal(await upgradeStatus(srv.http), 101);
  } finally {
    await stuck?.stop();
    await sender?.close();
    await srv.stop();
  }
});
