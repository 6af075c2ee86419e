/**
 * Helpers for the page tests: Debian's headless Chromium driven by
 * playwright-core, pages opened on a server, the page's own state read back,
 * and an accessibility check with axe-core injected into the page.
 *
 * @module
 */

import { axe, type BrowserContext, chromium, type Page } from "./deps.ts";
import { startServer, type TestServer } from "./helpers.ts";
import type { HubbubOptions } from "../mod.ts";

/** Debian's chromium; `.ci/run` installs it. */
export const CHROMIUM = "/usr/bin/chromium";

/** Where screenshots go (ignored by git, kept by CI). */
export const ARTIFACTS: string =
  new URL("../test-artifacts/", import.meta.url).pathname;

/** Whether the browser tests can run here; when not, they are ignored. */
export const haveChromium: boolean = await Deno.stat(CHROMIUM).then(
  () => true,
  () => false,
);
if (!haveChromium) {
  console.warn(
    `browser tests skipped: no ${CHROMIUM} (bash .ci/run installs it)`,
  );
}

/** Options of the browser context, e.g. `bypassCSP` for injected scripts. */
export interface ContextOptions {
  /** Lets the test inject scripts the page's CSP would block (axe-core). */
  bypassCSP?: boolean;
}

/** Runs `fn` with a fresh headless Chromium, then closes and removes it. */
export async function withChromium(
  fn: (browser: BrowserContext) => Promise<void>,
  options: ContextOptions = {},
): Promise<void> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const userDataDir = await Deno.makeTempDir({ prefix: "hubbub-chromium-" });
  try {
    const browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      bypassCSP: options.bypassCSP ?? false,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      await fn(browser);
    } finally {
      await browser.close();
    }
  } finally {
    await Deno.remove(userDataDir, { recursive: true });
  }
}

/** Runs `fn` with an in-process server and a fresh headless Chromium. */
export async function withBrowser(
  options: HubbubOptions,
  fn: (browser: BrowserContext, srv: TestServer) => Promise<void>,
  contextOptions: ContextOptions = {},
): Promise<void> {
  const srv = await startServer(options);
  try {
    await withChromium((browser) => fn(browser, srv), contextOptions);
  } finally {
    await srv.close();
  }
}

/**
 * Opens the page at `http` + `path` in a new tab and waits until it is in
 * its room. Nothing is clicked: the page joins by itself.
 */
export async function openPage(
  browser: BrowserContext,
  http: string,
  path = "/",
): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(http + path);
  await live(page);
  return page;
}

/** Opens the page in `room` under `name` (the `?name=` a link may carry). */
export function openChat(
  browser: BrowserContext,
  http: string,
  name: string,
  room = "lobby",
): Promise<Page> {
  return openPage(browser, http, `/?room=${room}&name=${name}`);
}

/** Waits until the page says it is connected. */
export async function live(page: Page): Promise<void> {
  await page.locator("#state[data-state=live]").waitFor();
}

/** Types `text` into the message box and presses Enter. */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

/** The chat texts the page shows, top to bottom. */
export function texts(page: Page): Promise<string[]> {
  return page.locator("#log .msg .text").allTextContents();
}

/** The names in the page's member list. */
export function members(page: Page): Promise<string[]> {
  return page.locator("#members li").allTextContents();
}

/** Waits until the page shows a chat message containing `text`. */
export async function shows(page: Page, text: string): Promise<void> {
  await page.locator("#log .msg", { hasText: text }).first().waitFor();
}

/** One rule axe-core found broken, with how many elements break it. */
export interface AxeViolation {
  /** The rule, e.g. `color-contrast`. */
  id: string;
  /** `minor`, `moderate`, `serious` or `critical`. */
  impact: string;
  /** Elements that break it. */
  nodes: number;
  /** What the rule asks for. */
  help: string;
}

/**
 * Runs axe-core's WCAG checks on the page as it is now. The page's CSP
 * allows only its own script, so the page's context must have been opened
 * with `bypassCSP`.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await page.evaluate("typeof axe !== 'undefined'"))) {
    await page.addScriptTag({ content: axe.source });
  }
  return await page.evaluate(`axe.run(document, {
    resultTypes: ["violations"],
  }).then((r) => r.violations.map((v) => ({
    id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help,
  })))`) as AxeViolation[];
}

/** `--help` of main.ts: which flags this server build has. */
let helpText: Promise<string> | undefined;

/** Whether main.ts lists `flag` in its `--help`. */
export async function serverHasFlag(flag: string): Promise<boolean> {
  helpText ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("../main.ts", import.meta.url).pathname,
        "--help",
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    return new TextDecoder().decode(out.stdout);
  })();
  return new RegExp(`(^|\\s)${flag}\\s`, "m").test(await helpText);
}
