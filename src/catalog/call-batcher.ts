/**
 * Group commit for catalog calls: calls made while the previous batch's round trip runs are
 * sent together as the next one, so N replicas finishing at once cost one script run (and
 * one replication fence) instead of N. A caller waits at most one batch longer than alone;
 * a single call with nothing in flight goes out at once (a microtask later, so calls made in
 * the same turn share it).
 *
 * `send` gets the batch in submission order and returns one outcome per item: a value, or an
 * Error that rejects that item's caller alone. When `send` itself throws, every item of the
 * batch is rejected with that error (each caller retries as if its own call had failed).
 */
export class CallBatcher<In, Out> {
  readonly #send: (items: In[]) => Promise<Array<Out | Error>>;
  readonly #maxBatch: number;
  #queue: Array<{ item: In; resolve: (value: Out) => void; reject: (error: unknown) => void }> = [];
  #running = false;

  constructor(send: (items: In[]) => Promise<Array<Out | Error>>, maxBatch: number) {
    this.#send = send;
    this.#maxBatch = maxBatch;
  }

  call(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        queueMicrotask(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        try {
          const outcomes = await this.#send(batch.map((b) => b.item));
          batch.forEach((b, i) => {
            const outcome = outcomes[i];
            if (outcome instanceof Error) b.reject(outcome);
            else b.resolve(outcome as Out);
          });
        } catch (error) {
          for (const b of batch) b.reject(error);
        }
      }
    } finally {
      // Set in the same synchronous step as the loop's last look at the queue: a call made
      // after that look starts a new drain.
      this.#running = false;
    }
  }
}
