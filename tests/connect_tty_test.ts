import assert from "node:assert/strict";
import { JSON_SUBPROTOCOL } from "../protocol.ts";
import { START_PERMISSIONS } from "./cli_helpers.ts";
import { connect, until, withServer } from "./helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** util-linux `script` (Debian's essential bsdutils) gives the client a pseudo-terminal. */
const SCRIPT = "/usr/bin/script";
const haveScript = await Deno.stat(SCRIPT).then(() => true, () => false);
if (!haveScript) console.warn(`terminal test skipped: no ${SCRIPT}`);

/**
 * What a terminal shows after `output`: just enough of a VT100 for
 * readline's redraws (CR, LF, cursor to column, erase line, erase below).
 */
function screen(output: string): string[] {
  const rows: string[][] = [[]];
  let row = 0;
  let col = 0;
  for (let i = 0; i < output.length; i++) {
    const ch = output[i];
    if (ch === "\x1b") {
      // deno-lint-ignore no-control-regex
      const m = output.slice(i).match(/^\x1b\[(\d*)([A-Za-z])/);
      if (!m) continue;
      i += m[0].length - 1;
      const n = m[1] === "" ? 0 : Number(m[1]);
      if (m[2] === "G") col = Math.max(0, n - 1);
      else if (m[2] === "K" && n === 2) rows[row] = [];
      else if (m[2] === "K") rows[row].length = Math.min(rows[row].length, col);
      else if (m[2] === "J") {
        rows[row].length = Math.min(rows[row].length, col);
        rows.length = row + 1;
      }
    } else if (ch === "\r") col = 0;
    else if (ch === "\n") {
      row++;
      rows[row] ??= [];
    } else {
      while (rows[row].length < col) rows[row].push(" ");
      rows[row][col++] = ch;
    }
  }
  return rows.map((r) => r.join("").trimEnd());
}

/** Kills `child` unless it has exited already (then kill throws a TypeError). */
function killIfRunning(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
  }
}

/** A client on a pseudo-terminal: its screen output and a keyboard. */
interface Terminal {
  /** Everything written to the terminal so far. */
  output(): string;
  /** Types `keys` (raw bytes: "\r" is Enter, "\x03" Ctrl-C, "\x04" Ctrl-D). */
  type(keys: string): Promise<void>;
  child: Deno.ChildProcess;
}

/** Runs `hubbub connect ...args` under `script`, gives it to `fn`, cleans up. */
async function withTerminal(
  args: string[],
  fn: (term: Terminal) => Promise<void>,
): Promise<void> {
  const command = [
    Deno.execPath(),
    "run",
    ...START_PERMISSIONS,
    MAIN,
    "connect",
    ...args,
  ].map((a) => `'${a}'`).join(" ");
  const child = new Deno.Command(SCRIPT, {
    args: ["-qefc", command, "/dev/null"],
    env: { TERM: "xterm", NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const outDone = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (c) => void (out += c) }),
  );
  const errDone = child.stderr.pipeTo(new WritableStream());
  const keys = child.stdin.getWriter();
  try {
    await fn({
      output: () => out,
      type: (s) => keys.write(new TextEncoder().encode(s)),
      child,
    });
  } finally {
    killIfRunning(child);
    await child.status;
    await keys.close().catch((e) => {
      if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
    });
    await Promise.all([outDone, errDone]);
  }
}

Deno.test({
  name:
    "connect on a terminal: an incoming line does not corrupt the half-typed one",
  ignore: !haveScript,
  fn: () =>
    withServer(async (srv) => {
      const alice = await connect(
        `${srv.ws}/ws?room=tty&name=alice`,
        JSON_SUBPROTOCOL,
      );
      try {
        await withTerminal(
          [`${srv.ws}/ws?room=tty`, "--nick", "me"],
          async ({ output, type, child }) => {
            await until(() => output().includes("joined tty as me"), "joined");
            await type("hal");
            await until(() => screen(output()).at(-1) === "> hal", "echo");
            alice.send(JSON.stringify({ type: "message", text: "incoming" }));
            await until(
              () =>
                /\] alice: incoming/.test(output()) &&
                screen(output()).at(-1) === "> hal",
              "incoming line printed and the typed line redrawn",
            );
            await type("f\r");
            await alice.waitFor(
              () => alice.messages.some((m) => m.from === "me"),
              "alice gets me's message",
            );
            assert.deepEqual(
              alice.messages.filter((m) => m.from === "me").map((m) => m.text),
              ["half"],
            );
            await until(() => /\] me: half/.test(output()), "own message");
            await type("\x04");
            assert.equal((await child.status).code, 0, output());
            const shown = screen(output()).filter((l) => l !== "" && l !== ">");
            const chat = shown.filter((l) => l.startsWith("["));
            assert.deepEqual(
              chat.map((l) => l.replace(/^\[\d\d:\d\d\] /, "")),
              ["alice: incoming", "me: half"],
            );
            assert.ok(shown.includes("> half"), shown.join("\n"));
          },
        );
      } finally {
        await alice.close();
      }
    }),
});

Deno.test({
  name: "connect on a terminal: Ctrl-C closes with 1000 and exits 0",
  ignore: !haveScript,
  fn: () =>
    withServer(async (srv) => {
      await withTerminal([`${srv.ws}/ws`], async ({ output, type, child }) => {
        await until(() => output().includes("joined lobby"), "joined");
        await type("not sent");
        await type("\x03");
        assert.equal((await child.status).code, 0, output());
        await until(
          () => srv.hubbub.metrics.closes.get("1000") === 1,
          "server counts close 1000",
        );
        assert.equal(srv.hubbub.metrics.messagesReceived, 0);
      });
    }),
});
