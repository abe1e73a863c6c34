/**
 * An HTTP proxy on loopback that sits between a backend and a real storage server and
 * misbehaves on demand: it flips one byte in the body of uploads (as a bad link would), answers
 * with an error status instead of forwarding, or stops listening (a server that went away)
 * and comes back on the same port. With `randomFaults` it misbehaves on a seeded random
 * fraction of requests instead: errors, cut connections, answers lost after the server acted,
 * and bodies damaged in either direction.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { mulberry32 } from './random.js';

/** Bodies smaller than this (XML block lists, JSON upload sessions) are never corrupted. */
const MIN_CORRUPTED_BODY_BYTES = 1024;

/** Faults injected on a random fraction of requests; each rate is a probability in [0, 1]. */
export interface RandomFaults {
  /** Seeds the generator that decides which requests misbehave. */
  seed: number;
  /** Answer with an error status (from `statuses`) instead of forwarding: the server never sees the request. */
  errorRate?: number;
  /** Error statuses to answer with; default 500 and 503. */
  statuses?: readonly number[];
  /** Forward the request, then answer 500 instead of the server's answer: the server acted, the client hears it failed. */
  lostAnswerRate?: number;
  /** Cut the connection before forwarding. */
  resetRate?: number;
  /** Flip one byte of an upload body (1 KiB or more) on its way to the server. */
  corruptUploadRate?: number;
  /** Flip one byte of a download body (a 200 answer of 1 KiB or more) on its way to the client. */
  corruptDownloadRate?: number;
}

/** How many of each random fault the proxy injected. */
export interface InjectedFaults {
  errors: number;
  lostAnswers: number;
  resets: number;
  corruptUploads: number;
  corruptDownloads: number;
}

export class FaultyProxy {
  /** How many upload bodies still to corrupt (Infinity: all of them). */
  corruptNextBodies = 0;
  /** Answer every request with this status instead of forwarding it. */
  failWithStatus: number | undefined;
  /** Upload bodies corrupted so far. */
  corruptedBodies = 0;
  /** Requests seen so far (forwarded or not). */
  requests = 0;
  /** Random faults injected so far (see `randomFaults`). */
  readonly injected: InjectedFaults = { errors: 0, lostAnswers: 0, resets: 0, corruptUploads: 0, corruptDownloads: 0 };

  readonly #target: URL;
  readonly #sockets = new Set<Socket>();
  #random: { faults: RandomFaults; next: () => number } | undefined;
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

  /** The random faults in force, if any. */
  get randomFaults(): RandomFaults | undefined {
    return this.#random?.faults;
  }

  /** Starts (or, with undefined, stops) misbehaving on a seeded random fraction of requests. */
  set randomFaults(faults: RandomFaults | undefined) {
    this.#random = faults && { faults, next: mulberry32(faults.seed) };
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
    this.requests += 1;
    if (this.failWithStatus !== undefined) {
      req.resume();
      res.writeHead(this.failWithStatus, { 'content-type': 'text/plain' }).end('injected failure');
      return;
    }
    const fault = this.#drawFault();
    if (fault.reset) {
      this.injected.resets += 1;
      req.socket.destroy();
      return;
    }
    if (fault.errorStatus !== undefined) {
      this.injected.errors += 1;
      req.resume();
      res.writeHead(fault.errorStatus, { 'content-type': 'text/plain' }).end('injected failure');
      return;
    }
    const length = Number(req.headers['content-length'] ?? 0);
    // A streamed upload of unknown length (chunked) is always large enough.
    const chunked = req.headers['transfer-encoding'] === 'chunked';
    const upload = (req.method === 'PUT' || req.method === 'POST') && (length >= MIN_CORRUPTED_BODY_BYTES || chunked);
    let corrupt = upload && this.corruptNextBodies > 0;
    if (corrupt) this.corruptNextBodies -= 1;
    else if (upload && fault.corruptUpload) {
      corrupt = true;
      this.injected.corruptUploads += 1;
    }
    if (corrupt) this.corruptedBodies += 1;
    const upstream = request(
      { host: this.#target.hostname, port: this.#target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (fault.loseAnswer) {
          // The server has acted on the request; the client only hears that it failed.
          this.injected.lostAnswers += 1;
          answer.resume();
          res.writeHead(500, { 'content-type': 'text/plain' }).end('injected failure after the server acted');
          return;
        }
        const answerLength = Number(answer.headers['content-length'] ?? 0);
        const damage = fault.corruptDownload && req.method === 'GET' && answer.statusCode === 200 && answerLength >= MIN_CORRUPTED_BODY_BYTES;
        if (damage) this.injected.corruptDownloads += 1;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        (damage ? answer.pipe(flipByteAt(Math.floor(answerLength / 2))) : answer).pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.on('error', () => upstream.destroy());
    (corrupt ? req.pipe(flipByteAt(length ? Math.floor(length / 2) : MIN_CORRUPTED_BODY_BYTES)) : req).pipe(upstream);
  }

  /** Which random faults hit the next request (one draw per kind, in a fixed order, so a seed replays). */
  #drawFault(): { reset: boolean; errorStatus?: number; loseAnswer: boolean; corruptUpload: boolean; corruptDownload: boolean } {
    const random = this.#random;
    if (!random) return { reset: false, loseAnswer: false, corruptUpload: false, corruptDownload: false };
    const { faults, next } = random;
    const hit = (rate: number | undefined) => next() < (rate ?? 0);
    const reset = hit(faults.resetRate);
    const error = hit(faults.errorRate);
    const statuses = faults.statuses?.length ? faults.statuses : [500, 503];
    const errorStatus = statuses[Math.floor(next() * statuses.length)]!;
    return {
      reset,
      ...(error ? { errorStatus } : {}),
      loseAnswer: hit(faults.lostAnswerRate),
      corruptUpload: hit(faults.corruptUploadRate),
      corruptDownload: hit(faults.corruptDownloadRate),
    };
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
