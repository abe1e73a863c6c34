/**
 * A budget of bytes in flight, granted first come, first served. A request larger than the
 * whole budget is granted the whole budget (once nothing else holds any), so it runs alone.
 */
export class ByteBudget {
  readonly #waiting: Array<{ bytes: number; grant: () => void }> = [];
  readonly #watchers = new Set<() => void>();
  #inUse = 0;

  constructor(readonly limitBytes: number) {}

  /** Requests waiting for their bytes now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Calls `watcher` whenever `waiting` changed; returns the function that stops it. */
  watch(watcher: () => void): () => void {
    this.#watchers.add(watcher);
    return () => this.#watchers.delete(watcher);
  }

  /** Resolves with the function that gives the bytes back (calling it twice gives them back once). */
  async acquire(bytes: number): Promise<() => void> {
    const want = Math.min(bytes, this.limitBytes);
    if (this.#waiting.length === 0 && this.#inUse + want <= this.limitBytes) this.#inUse += want;
    else {
      const granted = new Promise<void>((grant) => this.#waiting.push({ bytes: want, grant }));
      this.#notify();
      await granted;
    }
    let returned = false;
    return () => {
      if (returned) return;
      returned = true;
      this.#inUse -= want;
      const before = this.#waiting.length;
      while (this.#waiting.length && this.#inUse + this.#waiting[0]!.bytes <= this.limitBytes) {
        const next = this.#waiting.shift()!;
        this.#inUse += next.bytes;
        next.grant();
      }
      if (this.#waiting.length !== before) this.#notify();
    };
  }

  #notify(): void {
    for (const watcher of this.#watchers) watcher();
  }
}
