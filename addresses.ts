/**
 * Client addresses: which address a socket counts against for
 * `--max-connections-per-ip`, and how many sockets each address holds.
 *
 * @module
 */

/**
 * The address a request comes from. Behind a reverse proxy the TCP peer is
 * the proxy, so with `trustProxy` the address is the right-most entry of
 * `X-Forwarded-For`: the one the proxy itself appended. Entries to its left
 * were written by whoever connected to the proxy and prove nothing. Null when
 * nothing says (an embedder that does not pass Deno's connection info).
 */
export function clientAddress(
  req: Request,
  remote: Deno.Addr | undefined,
  trustProxy: boolean,
): string | null {
  if (trustProxy) {
    const forwarded = req.headers.get("x-forwarded-for");
    const last = forwarded?.split(",").map((a) => a.trim()).filter((a) =>
      a !== ""
    ).at(-1);
    if (last !== undefined) return last.toLowerCase();
  }
  if (remote && (remote.transport === "tcp" || remote.transport === "udp")) {
    return remote.hostname.toLowerCase();
  }
  return null;
}

/** Sockets held per client address; an address with none is forgotten. */
export class AddressCounts {
  readonly #counts = new Map<string, number>();
  readonly #of = new Map<WebSocket, string>();

  /** Sockets `address` holds now. */
  count(address: string): number {
    return this.#counts.get(address) ?? 0;
  }

  /** Counts `socket` against `address`. */
  add(socket: WebSocket, address: string | null): void {
    if (address === null) return;
    this.#of.set(socket, address);
    this.#counts.set(address, this.count(address) + 1);
  }

  /** Stops counting `socket`; idempotent. */
  remove(socket: WebSocket): void {
    const address = this.#of.get(socket);
    if (address === undefined) return;
    this.#of.delete(socket);
    const left = this.count(address) - 1;
    if (left > 0) this.#counts.set(address, left);
    else this.#counts.delete(address);
  }
}
