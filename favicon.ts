/**
 * The site icon, embedded like the page so that the binary serves it without
 * disk access: a 32×32 PNG (a speech bubble in the page's accent colour)
 * wrapped in an ICO container, which every browser and tool that asks for
 * `/favicon.ico` understands.
 *
 * @module
 */

/** `Content-Type` of {@link FAVICON}. */
export const FAVICON_TYPE = "image/x-icon";

/** How long browsers may keep the icon: it changes only with a release. */
export const FAVICON_CACHE = "public, max-age=86400";

/** The icon's bytes. */
export const FAVICON: Uint8Array<ArrayBuffer> = Uint8Array.from(
  atob(
    "AAABAAEAICAAAAEAIACDAgAAFgAAAIlQTkcNChoKAAAADUlIRFIAAAAgAAAAIAgGAAAAc3p69AAA" +
      "AjhJREFUeJzMls9LFGEYx7/POLvuGLp2SEiQErSIKCo6FOslKqMOYXRTMIn6A/wDgoLuXjsURLAR" +
      "RFSnIujW5h4iR0FQFFQUQQVZf+2oq/P6vjPOoLs7M446r34u7/s+7/vs9zvzvvPsq+CIUXDEqMWB" +
      "K11jtVpho5uAG2LI2zocAAbM8kbnbdaIqT36+8bcznnaOUh1jN4HM9+CqB5RwNg0SHmWSTf9KDFw" +
      "s33knkL4CSnQA8eEZaClfeIko7VBPjwNGfA3YRa0S72fG+atQ8ho/Yk0cQHfYiW+2im6tgH7wEnF" +
      "0VS2R9INOJrWZ0iEM5CMo6kGLbx6QcO5s5UYHluDPmS48dqaCrRcO2H1//xfQW5xMzCnHL4GujtP" +
      "4XFr0h1/+bWAng9zqK+L4d3rBlRX2Tu4lDfx/MUkpmYKnjleeJbiRCXh0d3krljbnSR4rcDDWzWu" +
      "uED0W1PVvjmhDagVVDYxkVAQj5VOiJhfTmgDy/y1Fu9f/7CBvGEi07dSsj7bn/fN8cLym+oYYeUm" +
      "qzQFbbeTSMQJq+sM334vuD92/aKGy+c1qz/ARf4NGoE5xWTSzeRrIGqEAbsSMsxAMo6mcwZ0yEc/" +
      "PgZMU33DmxzkkdvWtA1kPzWOm6CnkATf/y6h6RoQ9KabvoqbinVtik55Wmj8/dj83QmV1K0wl1L+" +
      "JCCfMmutCXMpLYdXjeDir/iTvMQBCfw7jlJ8XwYOUzy0gcMWD2UgCvE9G4hKfE8GohQXBH6GUbMF" +
      "AAD//24QdqkAAAAGSURBVAMApDvs+Wr/GRUAAAAASUVORK5CYII=",
  ),
  (c) => c.charCodeAt(0),
);
