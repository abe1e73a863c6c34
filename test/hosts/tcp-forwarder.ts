/**
 * A userspace TCP forwarder: listens on a host's root-side veth address and pipes every
 * connection to a server on 127.0.0.1. Linux does not route a veth address to loopback, and
 * the test servers (Redis, radosgw, azurite) bind loopback only, so this is how a host in a
 * network namespace reaches them. It forwards bytes as they are (HTTP or RESP alike).
 *
 * `hold()` stops reading from the host's side of every connection (the kernel buffers what the
 * host sends, the host sees a server that does not answer) until `release()`: a way to keep a
 * host's requests in flight at a moment the scenario chooses. `holdOpen()` does it to the
 * connections open now only, while new ones are forwarded: a server that hangs under its
 * clients' connections, as a failed-over master, while another answers.
 */
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export class TcpForwarder {
  /** Connections accepted so far. */
  connections = 0;
  readonly #server: Server;
  readonly #open = new Set<{ client: Socket; upstream: Socket }>();
  readonly #heldPairs = new Set<{ client: Socket; upstream: Socket }>();
  #held = false;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Listens on `host`:0 (a free port) and forwards to 127.0.0.1:`targetPort`. */
  static async start(host: string, targetPort: number): Promise<TcpForwarder> {
    const server = createServer();
    const forwarder = new TcpForwarder(server);
    server.on('connection', (client) => forwarder.#forward(client, targetPort));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
    return forwarder;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Connections open now. */
  get open(): number {
    return this.#open.size;
  }

  /** Stops reading what the host sends, on open and new connections, until `release()`. */
  hold(): void {
    this.#held = true;
    for (const pair of this.#open) stopReading(pair);
  }

  /** Stops reading what the host sends on the connections open now only, until `release()`. */
  holdOpen(): void {
    for (const pair of this.#open) {
      this.#heldPairs.add(pair);
      stopReading(pair);
    }
  }

  release(): void {
    this.#held = false;
    this.#heldPairs.clear();
    for (const { client, upstream } of this.#open) client.pipe(upstream);
  }

  /** Stops listening and drops every open connection. */
  async close(): Promise<void> {
    for (const { client, upstream } of this.#open) {
      client.destroy();
      upstream.destroy();
    }
    this.#open.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #forward(client: Socket, targetPort: number): void {
    this.connections += 1;
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    const pair = { client, upstream };
    this.#open.add(pair);
    const end = (): void => {
      this.#open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.pipe(client);
    if (this.#held) stopReading(pair);
    else client.pipe(upstream);
  }
}

/** Unpiped as well as paused: a pipe resumes its source whenever the destination drains. */
function stopReading({ client, upstream }: { client: Socket; upstream: Socket }): void {
  client.unpipe(upstream);
  client.pause();
}
