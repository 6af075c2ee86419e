import assert from "node:assert/strict";
import { offeredProtocols } from "../gate.ts";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import { rawRequest, readFrame, spawnServer } from "./helpers.ts";

/** The request line and headers of an upgrade, without any protocol offer. */
function upgradeHead(port: number, path: string, extra: string[]): string[] {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...extra,
  ];
}

Deno.test("offeredProtocols reads an HTTP list however it is spaced", () => {
  const cases: [string | null, string[]][] = [
    [null, []],
    ["", []],
    ["chat,hubbub.v1", ["chat", "hubbub.v1"]],
    ["chat, hubbub.v1", ["chat", "hubbub.v1"]],
    ["chat,  hubbub.v1", ["chat", "hubbub.v1"]],
    ["hubbub.v1,chat", ["hubbub.v1", "chat"]],
    [" ,chat,\thubbub.v1 ,, ", ["chat", "hubbub.v1"]],
    ["bearer.a.b.c, hubbub.v1", ["bearer.a.b.c", "hubbub.v1"]],
  ];
  for (const [header, list] of cases) {
    assert.deepEqual(offeredProtocols(header), list, String(header));
  }
});

Deno.test("Sec-WebSocket-Protocol: every spelling of a list upgrades; no 5xx, no ERROR line", async () => {
  const srv = await spawnServer([]);
  try {
    const json: string[][] = [
      ["Sec-WebSocket-Protocol: chat,hubbub.v1"],
      ["Sec-WebSocket-Protocol: hubbub.v1,chat"],
      ["Sec-WebSocket-Protocol: chat,  hubbub.v1"],
      ["Sec-WebSocket-Protocol: chat, hubbub.v1"],
      ["Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: hubbub.v1"],
      ["Sec-WebSocket-Protocol: ,hubbub.v1,"],
    ];
    const plain: string[][] = [
      [],
      ["Sec-WebSocket-Protocol: chat,superchat"],
      ["Sec-WebSocket-Protocol: ,,"],
      ["Sec-WebSocket-Protocol: hubbub.v2"],
    ];
    for (const [offers, wantJson] of [[json, true], [plain, false]] as const) {
      for (const extra of offers) {
        for (const path of ["/ws", "/echo"]) {
          const { conn, response } = await rawRequest(
            srv.port,
            upgradeHead(srv.port, path, extra),
          );
          try {
            const what = `${path} ${extra.join(" | ")}`;
            assert.equal(response.status, 101, what);
            const chosen = response.headers.get("sec-websocket-protocol");
            if (path === "/ws" && wantJson) {
              assert.equal(chosen, JSON_SUBPROTOCOL, what);
              const welcome = await readFrame(conn);
              assert.ok(welcome, what);
              const text = new TextDecoder().decode(welcome.payload);
              const first = JSON.parse(text.split("\n")[0]);
              assert.equal(first.type, "welcome", what);
            } else {
              assert.equal(chosen, undefined, what);
            }
          } finally {
            conn.close();
          }
        }
      }
    }
  } finally {
    await srv.stop();
  }
  assert.doesNotMatch(srv.stderr(), / ERROR /);
});
