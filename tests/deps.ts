/**
 * npm packages only the tests use. They are named here with full specifiers
 * instead of in deno.json: Deno installs every package of the lock file and of
 * deno.json's imports before running anything, so a first `deno task start`
 * would download a browser driver that only the tests need. They are locked
 * in `tests/deno.lock`, which the test task uses; `deno.lock` holds only the
 * server's packages.
 *
 * @module
 */

export { chromium } from "npm:playwright-core@1.65.1";
export type { BrowserContext, Page } from "npm:playwright-core@1.65.1";
export { default as axe } from "npm:axe-core@4.14.1";
