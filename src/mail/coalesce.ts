/**
 * Group commit for the send path's statements: one call to `run` is under way at a time, and
 * every call made meanwhile waits for the next one, which carries all of their items together.
 *
 * The send path frees SMTP connections one at a time, so left alone it would claim and record
 * one or two rows per statement, and the store's work per email doubled (docs/send-path.md).
 * Waiting for a fixed number of rows instead keeps connections idle when the server is slow.
 * Coalescing needs no such number: while the store is busy, requests pile up into the next
 * statement, and when it is not, a lone request goes at once.
 */
export function coalesce<T, R>(run: (items: T[]) => Promise<R>): (items: readonly T[]) => Promise<R> {
  interface Call {
    items: readonly T[];
    resolve(result: R): void;
    reject(error: unknown): void;
  }
  let queued: Call[] = [];
  let busy = false;

  function next(): void {
    if (busy || queued.length === 0) return;
    const calls = queued;
    queued = [];
    busy = true;
    run(calls.flatMap((call) => call.items))
      .then(
        (result) => {
          for (const call of calls) call.resolve(result);
        },
        (error: unknown) => {
          for (const call of calls) call.reject(error);
        },
      )
      .finally(() => {
        busy = false;
        next();
      });
  }

  return (items) =>
    new Promise<R>((resolve, reject) => {
      queued.push({ items, resolve, reject });
      next();
    });
}
