/**
 * PGlite in its own thread: starts the owner thread (`pglite-owner.ts`) on a data directory
 * and hands out sessions to it, each a Duplex stream that speaks the PostgreSQL wire protocol
 * as a socket to a server would, for node-postgres to use as its connection's stream
 * (`pglite-pool.ts`). So the database's CPU time is spent off the main thread, and the event
 * loop keeps running while queries run.
 *
 * What a session writes in one turn of the event loop travels as one message (node-postgres
 * writes a query as several protocol messages, synchronously); replies arrive as messages and
 * are pushed as they come. It owns the thread it starts: `close()` ends every session, closes
 * the PGlite and waits for the thread to exit. If the thread dies, every session errors with
 * the reason and new ones fail with it.
 */
import { Duplex } from "node:stream";
import { Worker } from "node:worker_threads";
import { siblingModule } from "./pglite-datadir.js";
import type { FromOwner, OwnerOptions, ToOwner } from "./pglite-owner.js";

export interface PGliteThread {
  /** A new session: a stream to give node-postgres as its connection. */
  connect(): Duplex;
  /** Ends every session, closes the database and waits for its thread to exit. */
  close(): Promise<void>;
}

class SessionStream extends Duplex {
  private pending: Uint8Array[] = [];
  private flushScheduled = false;

  constructor(
    private readonly thread: ThreadHandle,
    readonly id: number,
  ) {
    super();
  }

  /** What node-postgres calls on a socket. The thread is already there: connected at once. */
  connect(): this {
    process.nextTick(() => this.emit("connect"));
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending.push(chunk);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
    callback();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const total = this.pending.reduce((sum, chunk) => sum + chunk.length, 0);
    // Its own ArrayBuffer, transferred: a Buffer may share its memory with other Buffers.
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const chunk of this.pending) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    this.pending = [];
    this.thread.post({ op: "data", session: this.id, bytes: bytes.buffer }, [bytes.buffer]);
  }

  override _read(): void {}

  override _final(callback: (error?: Error | null) => void): void {
    this.flush();
    this.thread.post({ op: "end", session: this.id });
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.writableFinished) this.thread.post({ op: "end", session: this.id });
    this.thread.forget(this.id);
    callback(error);
  }

  receive(bytes: ArrayBuffer): void {
    this.push(Buffer.from(bytes));
  }
}

class ThreadHandle implements PGliteThread {
  private readonly sessions = new Map<number, SessionStream>();
  private nextId = 1;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  private onClosed: (() => void) | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly dataDir: string,
  ) {
    this.exited = new Promise((resolve) => worker.once("exit", () => resolve()));
    worker.on("message", (message: FromOwner) => this.onMessage(message));
    worker.on("error", (error) =>
      this.fail(new Error(`the embedded database thread failed: ${error.message}`)),
    );
    worker.on("exit", (code) => {
      if (!this.closing) this.fail(new Error(`the embedded database thread exited (code ${code})`));
    });
  }

  post(message: ToOwner, transfer?: ArrayBuffer[]): void {
    if (this.failure || this.closing) return;
    this.worker.postMessage(message, transfer);
  }

  forget(id: number): void {
    this.sessions.delete(id);
  }

  connect(): Duplex {
    const stream = new SessionStream(this, this.nextId++);
    const refused =
      this.failure ??
      (this.closing ? new Error(`the embedded database (${this.dataDir}) is closed`) : undefined);
    if (refused) process.nextTick(() => stream.destroy(refused));
    else this.sessions.set(stream.id, stream);
    return stream;
  }

  private onMessage(message: FromOwner): void {
    switch (message.op) {
      case "data":
        this.sessions.get(message.session)?.receive(message.bytes);
        break;
      case "ended":
        this.sessions.get(message.session)?.destroy();
        break;
      case "fatal":
        this.fail(new Error(message.message));
        void this.worker.terminate();
        break;
      case "closed":
        this.onClosed?.();
        break;
      case "ready":
      case "failed":
        break;
    }
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const session of [...this.sessions.values()]) session.destroy(error);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const session of [...this.sessions.values()]) session.destroy();
      if (!this.failure) {
        const closed = new Promise<void>((resolve) => (this.onClosed = resolve));
        this.worker.postMessage({ op: "close" } satisfies ToOwner);
        await Promise.race([closed, this.exited]);
      }
      await this.exited;
    })();
    return this.closing;
  }
}

/**
 * Starts the owner thread on `dataDir` and resolves once its database is open. With
 * `prepared`, the thread starts at once but opens the directory only once `prepared` has
 * resolved (the directory is being made meanwhile); if it rejects, so does this.
 */
export async function openPGliteThread(
  options: { dataDir: string },
  prepared?: Promise<unknown>,
): Promise<PGliteThread> {
  // From the sources (the tests), the thread runs the .ts module through the loader the tests
  // register (test/helpers/ts-loader.js), as the whole test process does.
  const workerData: OwnerOptions = { dataDir: options.dataDir, waitForOpen: prepared !== undefined };
  const worker = new Worker(siblingModule("pglite-owner"), { workerData });
  const handle = new ThreadHandle(worker, options.dataDir);
  if (prepared) {
    try {
      await prepared;
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    worker.postMessage({ op: "open" } satisfies ToOwner);
  }
  const ready = await new Promise<FromOwner>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`the embedded database thread exited (code ${code})`)));
  }).catch((error: unknown) => ({ op: "failed", message: (error as Error).message }));
  if (ready.op !== "ready") {
    await worker.terminate();
    const reason = ready.op === "failed" ? ready.message : ready.op;
    throw new Error(`the embedded database (${options.dataDir}) did not open: ${reason}`);
  }
  return handle;
}
