/**
 * A counting semaphore for the send path: how many SMTP transactions (or claimed recipients) one
 * worker process may have at once. A batch claims recipients only for the slots it holds, so
 * after a crash no more rows can be `unknown` than transactions had started; and the pool is
 * fed by every batch of the process together, not by one message per job.
 */
export class SendSlots {
  private free: number;
  private readonly waiting: { want: number; grant: (n: number) => void }[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new Error("SendSlots needs a capacity of 1 or more");
    this.free = capacity;
  }

  /**
   * Waits for at least one free slot and takes up to `want` of them, in the order callers
   * asked (`first`: ahead of every waiter); resolves with how many it took (0 when `signal`
   * aborts first).
   */
  acquire(want: number, signal?: AbortSignal, first = false): Promise<number> {
    if (want < 1 || signal?.aborted) return Promise.resolve(0);
    if ((first || this.waiting.length === 0) && this.free > 0) return Promise.resolve(this.take(want));
    return new Promise((resolve) => {
      const waiter = {
        want,
        grant: (n: number) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(n);
        },
      };
      const onAbort = () => {
        const index = this.waiting.indexOf(waiter);
        if (index >= 0) this.waiting.splice(index, 1);
        resolve(0);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (first) this.waiting.unshift(waiter);
      else this.waiting.push(waiter);
    });
  }

  release(n: number): void {
    this.free += n;
    while (this.free > 0 && this.waiting.length > 0) {
      const waiter = this.waiting.shift()!;
      waiter.grant(this.take(waiter.want));
    }
  }

  private take(want: number): number {
    const n = Math.min(want, this.free);
    this.free -= n;
    return n;
  }
}
