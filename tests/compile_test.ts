import assert from "node:assert/strict";
import { START_PERMISSIONS } from "./cli_helpers.ts";
import { until, WAIT_MS, within, withServer } from "./helpers.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PAGE = new URL("../static/home.html", import.meta.url);
/**
 * Proxies that lead nowhere: a command run with them cannot download
 * anything, so it passing proves it needs nothing from the network.
 */
const OFFLINE_ENV = {
  HTTP_PROXY: "http://127.0.0.1:9",
  HTTPS_PROXY: "http://127.0.0.1:9",
  NO_PROXY: "",
  NO_COLOR: "1",
};

/** `deno task compile`'s command, with the output moved to `output`. */
async function compileArgs(output: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const words = (config.tasks.compile as string).split(/\s+/);
  assert.equal(words[0], "deno");
  const at = words.indexOf("--output");
  assert.ok(at > 0, "the compile task names its --output");
  words[at + 1] = output;
  return words.slice(1);
}

/**
 * Compiles once, up front, so that the test can be skipped, with the reason
 * printed, where `deno compile` cannot download its runtime (denort).
 */
async function tryCompile(): Promise<
  { binary: string; dir: string } | { skip: string }
> {
  const dir = await Deno.makeTempDir({ prefix: "hubbub-compile-" });
  const binary = `${dir}/hubbub`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: await compileArgs(binary),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code === 0) return { binary, dir };
  await Deno.remove(dir, { recursive: true });
  const stderr = new TextDecoder().decode(out.stderr);
  const download = stderr.match(/Download (\S+)/)?.[1];
  const cause = stderr.split("\n").find((l) =>
    /error sending request|dns error|lookup|connect/i.test(l)
  );
  if (download && cause) {
    return {
      skip: `deno compile could not download its runtime ${download}: ${
        cause.replace(/^\s*\d+:\s*/, "").replace(/^.*\(Connect\): /, "")
      }`,
    };
  }
  throw new Error(`deno compile failed:\n${stderr}`);
}

const compiled = await tryCompile();
if ("skip" in compiled) console.warn(`compile test skipped: ${compiled.skip}`);

Deno.test({
  name: "compile: dist/hubbub serves the embedded page and is the client" +
    ("skip" in compiled ? ` (skipped: ${compiled.skip})` : ""),
  ignore: "skip" in compiled,
  async fn() {
    if ("skip" in compiled) return;
    try {
      await withServer(async (srv) => {
        const echo = new Deno.Command(compiled.binary, {
          args: ["connect", `${srv.ws}/echo`],
          stdin: "piped",
          stdout: "piped",
        }).spawn();
        const w = echo.stdin.getWriter();
        await w.write(new TextEncoder().encode("hello\n"));
        await w.close();
        const out = await echo.output();
        assert.equal(out.code, 0);
        assert.equal(new TextDecoder().decode(out.stdout), "hello\n");
      });
      await servesPage([compiled.binary]);
    } finally {
      await Deno.remove(compiled.dir, { recursive: true });
    }
  },
});

/**
 * Runs a hubbub command line (`cmd` then server flags) on a free port and
 * checks that `/` is the page, byte for byte, then stops it with SIGTERM.
 * Resolves to what the command wrote on stderr.
 */
async function servesPage(
  cmd: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const child = new Deno.Command(cmd[0], {
    args: [...cmd.slice(1), "--port", "0", "--hostname", "127.0.0.1"],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const outDone = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (c) => void (out += c) }),
  );
  const errDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (c) => void (err += c) }),
  );
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const listening = /listening on (http:\/\/\S+:\d+\/)/;
  try {
    await until(() => exited || listening.test(out), "listening");
    assert.ok(!exited, `${cmd.join(" ")} exited early:\n${err}`);
    const res = await fetch(out.match(listening)![1]);
    assert.equal(res.status, 200);
    assert.deepEqual(
      new Uint8Array(await res.arrayBuffer()),
      await Deno.readFile(PAGE),
    );
  } finally {
    if (!exited) child.kill("SIGTERM");
    await within(status, "server exit", WAIT_MS);
    await Promise.all([outDone, errDone]);
  }
  assert.equal((await status).code, 0, err);
  return err;
}

Deno.test("compile: the page is in the module graph, so deno compile embeds it", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0);
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const specifiers = info.modules.map((m: { specifier: string }) =>
    m.specifier
  );
  assert.ok(
    specifiers.some((s: string) => s.endsWith("/static/home.html")),
    specifiers.join("\n"),
  );
});

Deno.test("install: deno install --global gives a hubbub command that works offline", async () => {
  const root = await Deno.makeTempDir({ prefix: "hubbub-install-" });
  try {
    const install = await new Deno.Command(Deno.execPath(), {
      args: [
        "install",
        "--global",
        "--force",
        "--config",
        "deno.json",
        "--name",
        "hubbub",
        ...START_PERMISSIONS,
        "main.ts",
      ],
      cwd: ROOT,
      env: { DENO_INSTALL_ROOT: root, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(install.code, 0, new TextDecoder().decode(install.stderr));
    const hubbub = `${root}/bin/hubbub`;
    const help = await new Deno.Command(hubbub, {
      args: ["connect", "--help"],
      env: OFFLINE_ENV,
      stdout: "piped",
    }).output();
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /hubbub connect/);
    await servesPage([hubbub], OFFLINE_ENV);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task start on a fresh machine downloads only the server's own packages", async () => {
  // An empty cache: `deno task` once installed everything the lock listed,
  // playwright-core (17 MB) included, before starting the server. The
  // server's own npm packages (jose, redis) it must fetch from the registry;
  // nothing that only the tests use.
  const denoDir = await Deno.makeTempDir({ prefix: "hubbub-denodir-" });
  try {
    const err = await servesPage([Deno.execPath(), "task", "start"], {
      NO_COLOR: "1",
      DENO_DIR: denoDir,
    });
    const downloads = [...err.matchAll(/^Download (\S+)/gm)].map((m) => m[1]);
    for (const testOnly of ["playwright-core", "axe-core"]) {
      assert.ok(
        !downloads.some((url) => url.includes(testOnly)),
        `${testOnly} downloaded by deno task start:\n${downloads.join("\n")}`,
      );
    }
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
