/**
 * An HTTP proxy on loopback that sits between a backend and a real storage server and
 * misbehaves on demand: it flips one byte in the body of uploads (as a bad link would), answers
 * with an error status instead of forwarding, or stops listening (a server that went away)
 * and comes back on the same port.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

/** Bodies smaller than this (XML block lists, JSON upload sessions) are never corrupted. */
const MIN_CORRUPTED_BODY_BYTES = 1024;

export class FaultyProxy {
  /** How many upload bodies still to corrupt (Infinity: all of them). */
  corruptNextBodies = 0;
  /** Answer every request with this status instead of forwarding it. */
  failWithStatus: number | undefined;
  /** Upload bodies corrupted so far. */
  corruptedBodies = 0;

  readonly #target: URL;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;

  private constructor(target: string) {
    this.#target = new URL(target);
  }

  /** Starts a proxy to `target` (an origin such as "http://127.0.0.1:7480") on a free loopback port. */
  static async start(target: string): Promise<FaultyProxy> {
    const proxy = new FaultyProxy(target);
    await proxy.resume();
    return proxy;
  }

  /** Origin of the proxy, e.g. "http://127.0.0.1:41234". */
  get origin(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Stops listening and drops open connections: to clients it looks like the server died. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again (on the same port once it has had one). */
  async resume(): Promise<void> {
    if (this.#server) return;
    const server = createServer((req, res) => this.#handle(req, res));
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(this.#port, '127.0.0.1', resolve));
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.failWithStatus !== undefined) {
      req.resume();
      res.writeHead(this.failWithStatus, { 'content-type': 'text/plain' }).end('injected failure');
      return;
    }
    const length = Number(req.headers['content-length'] ?? 0);
    // A streamed upload of unknown length (chunked) is always large enough.
    const chunked = req.headers['transfer-encoding'] === 'chunked';
    const upload = (req.method === 'PUT' || req.method === 'POST') && (length >= MIN_CORRUPTED_BODY_BYTES || chunked);
    const corrupt = upload && this.corruptNextBodies > 0;
    if (corrupt) {
      this.corruptNextBodies -= 1;
      this.corruptedBodies += 1;
    }
    const upstream = request(
      { host: this.#target.hostname, port: this.#target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.on('error', () => upstream.destroy());
    (corrupt ? req.pipe(flipByteAt(length ? Math.floor(length / 2) : MIN_CORRUPTED_BODY_BYTES)) : req).pipe(upstream);
  }
}

/** Passes bytes through, inverting the one at `offset`. */
function flipByteAt(offset: number): Transform {
  let seen = 0;
  return new Transform({
    transform(piece: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      if (offset >= seen && offset < seen + piece.byteLength) {
        const copy = Buffer.from(piece);
        copy[offset - seen] = copy[offset - seen]! ^ 0xff;
        piece = copy;
      }
      seen += piece.byteLength;
      done(null, piece);
    },
  });
}
