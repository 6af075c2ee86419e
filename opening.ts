/**
 * Opening what the gate admitted: the upgrade, then a chat client in the
 * hub or an echo socket, each held by the instance's connections and
 * watched until its token expires.
 *
 * @module
 */

import { Client, type ClientContext, type ClientLimits } from "./client.ts";
import type { Connections } from "./connections.ts";
import { type EchoLimits, serveEcho } from "./echo.ts";
import type { TokenLifetimes } from "./expiry.ts";
import type { Admitted, ChatAdmission, EchoAdmission } from "./gate.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { checkName } from "./protocol.ts";

/** What an {@link Opener} needs to open and hand over sockets. */
export interface OpenerOptions {
  /** Seconds without a pong before Deno drops a peer, 0 = off. */
  idleTimeout: number;
  /** Limits every chat frame is checked against. */
  limits: ClientLimits;
  /** Limits of every echo socket. */
  echo: EchoLimits;
  /** The hub chat clients join. */
  hub: Hub;
  /** Counters the chat clients bump. */
  metrics: Metrics;
  /** Where the chat clients report. */
  logger: Logger;
  /** Holds every socket opened, and lets it go. */
  connections: Connections;
  /** Closes a socket whose token expires. */
  lifetimes: TokenLifetimes;
}

/**
 * Turns an admission into an open socket. Guest names are numbered here,
 * once per instance, so that two guests never share one.
 */
export class Opener {
  readonly #idleTimeout: number;
  readonly #echo: EchoLimits;
  readonly #hub: Hub;
  readonly #connections: Connections;
  readonly #lifetimes: TokenLifetimes;
  /** Shared by every chat client: nothing in it is per socket. */
  readonly #ctx: ClientContext;
  #guestNumber = 0;

  /** Opens sockets into `options.hub`, held by `options.connections`. */
  constructor(options: OpenerOptions) {
    const { hub, connections, lifetimes } = options;
    this.#idleTimeout = options.idleTimeout;
    this.#echo = options.echo;
    this.#hub = hub;
    this.#connections = connections;
    this.#lifetimes = lifetimes;
    this.#ctx = {
      hub,
      metrics: options.metrics,
      logger: options.logger,
      limits: options.limits,
      tracking: connections,
      refreshToken: (client, token) => this.#refreshToken(client, token),
    };
  }

  /** Opens a chat socket for what the gate admitted, counted against `address`. */
  chat(
    req: Request,
    admitted: Admitted<ChatAdmission>,
    address: string | null,
  ): Response | Promise<Response> {
    return admit(admitted, (a) => this.#openChat(req, a, address));
  }

  /** Opens an echo socket for what the gate admitted, counted against `address`. */
  echo(
    req: Request,
    admitted: Admitted<EchoAdmission>,
    address: string | null,
  ): Response | Promise<Response> {
    return admit(admitted, (a) => this.#openEcho(req, a, address));
  }

  #openChat(
    req: Request,
    admitted: ChatAdmission,
    address: string | null,
  ): Response {
    const { socket, response } = this.#upgrade(req, admitted.protocol, address);
    const { room, since, epoch, identity } = admitted;
    let name: string;
    if (identity) {
      name = identity.name;
    } else {
      const requested = checkName(admitted.name ?? "");
      name = "name" in requested
        ? requested.name
        : `guest-${++this.#guestNumber}`;
    }
    const user = identity?.user;
    const client = new Client(
      socket,
      admitted.json,
      { room, name, since, epoch, user },
      this.#ctx,
    );
    this.#lifetimes.watch(socket, identity, () => this.#hub.leave(client));
    return response;
  }

  #openEcho(
    req: Request,
    admitted: EchoAdmission,
    address: string | null,
  ): Response {
    const { socket, response } = this.#upgrade(req, admitted.protocol, address);
    serveEcho(socket, this.#echo, this.#connections);
    this.#lifetimes.watch(socket, admitted.identity);
    return response;
  }

  /**
   * Upgrades an admitted request and holds its socket, counted against
   * `address`. Without Deno's `protocol` option: it checks the choice
   * against its own split of the offer on ", " and throws (a 500) on
   * `chat,hubbub.v1`, as npm `ws` writes it. The gate read the offer as the
   * HTTP list it is and chose (never a `bearer.<JWT>` entry); the answer
   * header is the whole of choosing a subprotocol.
   */
  #upgrade(
    req: Request,
    protocol: string | null,
    address: string | null,
  ): { socket: WebSocket; response: Response } {
    const upgraded = Deno.upgradeWebSocket(req, {
      idleTimeout: this.#idleTimeout,
    });
    if (protocol !== null) {
      upgraded.response.headers.set("sec-websocket-protocol", protocol);
    }
    this.#connections.hold(upgraded.socket, address);
    return upgraded;
  }

  #refreshToken(client: Client, token: string): void {
    this.#lifetimes.refresh({
      socket: client.socket,
      user: client.user,
      roomName: () => client.room?.name ?? null,
      refuse: (message) => this.#hub.sendError(client, "bad_token", message),
    }, token);
  }
}

/** Opens what the gate admitted, once its token is verified if need be. */
function admit<T>(
  admitted: Admitted<T>,
  open: (admission: T) => Response,
): Response | Promise<Response> {
  const settle = (a: T | Response) => a instanceof Response ? a : open(a);
  return admitted instanceof Promise ? admitted.then(settle) : settle(admitted);
}
