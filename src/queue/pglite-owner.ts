/**
 * The thread that owns the PGlite: started by `pglite-thread.ts` as a node:worker_threads
 * Worker, it opens the data directory, and serves the sessions of the main thread's
 * node-postgres clients, whose wire-protocol bytes it receives by message.
 *
 * PGlite is one PostgreSQL backend; this thread makes it look like a server with many
 * sessions:
 * - Requests run one at a time, in the order they arrive. A session whose reply ended inside
 *   a transaction (ReadyForQuery status T or E), or in the middle of an extended query (no
 *   ReadyForQuery yet), holds the backend: the others wait until it is idle again. The lock is
 *   here, with the PGlite, so no two pools or clients can ever interleave transactions.
 * - A session that ends while holding the backend (its client was destroyed) is rolled back.
 * - Notifications are routed: each session receives those of the channels it listens on,
 *   after the reply that produced them. The backend LISTENs on every channel any session ever
 *   listened on, and an UNLISTEN only changes the session's own set.
 * - A LISTEN or UNLISTEN of a session that does not hold the backend is answered at once, not
 *   in turn: it takes effect at once, as on a server. A channel the backend is not yet
 *   listening on is listened on inside the holder's open transaction (so a NOTIFY it commits is
 *   seen) and again as soon as the backend is idle (in case that transaction rolled back).
 * - Every session starts with the reply of the one startup the backend had (PGlite is already
 *   connected as user postgres to database postgres, whatever the startup packet asks).
 * - Statements are prepared once and shared by all sessions (`pglite-statements.ts`).
 *
 * It never creates a data directory: one without PG_VERSION is an error (initdb belongs in a
 * process that exits, see `pglite-datadir.ts`). Commits are durable as they are in-process:
 * PGlite's Node filesystem writes through to the files at each write, so what PostgreSQL wrote
 * at COMMIT is in the kernel when the reply is sent, and survives `kill -9`.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { PGlite, type PGliteOptions } from "@electric-sql/pglite";
import {
  CANCEL_REQUEST,
  GSSENC_REQUEST,
  SSL_REQUEST,
  commandComplete,
  concat,
  errorCode,
  errorResponse,
  frames,
  isCopyFromStdin,
  lastStatus,
  listenStatement,
  notificationChannel,
  quoteIdentifier,
  queryMessage,
  readyForQuery,
  sqlOf,
  SYNC_MESSAGE,
  startupHeader,
  startupPacket,
  type Frame,
  type TransactionStatus,
} from "./pglite-wire.js";
import { STATEMENT_GONE, StatementCache } from "./pglite-statements.js";

/** Messages from the main thread. */
export type ToOwner =
  | { op: "open" }
  | { op: "data"; session: number; bytes: ArrayBuffer }
  | { op: "end"; session: number }
  | { op: "close" };

/** Messages to the main thread. */
export type FromOwner =
  | { op: "ready" }
  | { op: "failed"; message: string }
  | { op: "data"; session: number; bytes: ArrayBuffer }
  | { op: "ended"; session: number }
  | { op: "fatal"; message: string }
  | { op: "closed" };

export interface OwnerOptions {
  /** The PostgreSQL data directory (PGlite's), or `memory://` for a throwaway database. */
  dataDir: string;
  /**
   * Wait for an `open` message before opening it (it is being made meanwhile): the thread
   * loads and compiles PGlite first, which takes as long as copying a data directory.
   */
  waitForOpen?: boolean;
}

/**
 * PostgreSQL's shared buffers, 128 MB by default, are all touched when PGlite starts (its
 * shared memory is its WebAssembly heap): 32 MB saves about 110 MB of RSS, and the files
 * behind them are in the kernel's page cache.
 */
const SHARED_BUFFERS = "32MB";

interface Session {
  id: number;
  started: boolean;
  /** Bytes received but not yet a whole message. */
  inbox: Uint8Array;
  channels: Set<string>;
  /** After its last reply: I, T, E, or "open" in the middle of an extended query. */
  status: TransactionStatus | "open";
}

type Listen = { verb: "LISTEN" | "UNLISTEN"; channel: string };

interface Executed {
  reply: Uint8Array;
  notifications: [channel: string, message: Uint8Array][];
  status: TransactionStatus | undefined;
  errorCode: string | undefined;
}

const NO_SSL = new Uint8Array([0x4e]);

class Owner {
  private readonly sessions = new Map<number, Session>();
  /** Requests in arrival order; each client sends one at a time. */
  private readonly work: { session: Session; bytes: Uint8Array }[] = [];
  /** Sessions whose client went away, to be rolled back if they hold the backend. */
  private readonly ended: Session[] = [];
  private holder: Session | undefined;
  /** Channels the backend has a committed LISTEN on. */
  private readonly listening = new Set<string>();
  /** Channels some session listens on whose backend LISTEN is not known to be committed. */
  private readonly pendingListens = new Set<string>();
  /** Pending channels already listened on inside the holder's open transaction. */
  private readonly injected = new Set<string>();
  private readonly statements = new StatementCache();
  private running = false;
  private failed = false;

  constructor(
    private readonly db: PGlite,
    private readonly startupReply: Uint8Array,
    private readonly post: (message: FromOwner, transfer?: ArrayBuffer[]) => void,
  ) {}

  /** Takes a message from the main thread: state changes here, PGlite runs only in `pump`. */
  receive(message: ToOwner): void {
    if (this.failed) return;
    if (message.op === "data") this.onData(message.session, new Uint8Array(message.bytes));
    else if (message.op === "end") this.endSession(message.session);
    void this.pump();
  }

  /**
   * Sends bytes to a session's client. `disposable` bytes (a reply made for this send alone)
   * have their buffer transferred, and are unusable after; others are copied first.
   */
  private send(session: Session, bytes: Uint8Array, disposable = false): void {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    const own = disposable && whole ? bytes : bytes.slice();
    this.post({ op: "data", session: session.id, bytes: own.buffer as ArrayBuffer }, [
      own.buffer as ArrayBuffer,
    ]);
  }

  private onData(id: number, bytes: Uint8Array): void {
    let session = this.sessions.get(id);
    if (!session) {
      session = { id, started: false, inbox: new Uint8Array(0), channels: new Set(), status: "I" };
      this.sessions.set(id, session);
    }
    let input = session.inbox.length > 0 ? concat([session.inbox, bytes]) : bytes;
    if (!session.started) {
      const header = startupHeader(input);
      if (!header) {
        session.inbox = input.slice();
        return;
      }
      input = input.subarray(header.length);
      if (header.code === SSL_REQUEST || header.code === GSSENC_REQUEST) {
        this.send(session, NO_SSL);
        session.inbox = input.slice();
        return;
      }
      if (header.code === CANCEL_REQUEST) {
        // A query cannot be cancelled here: it runs to its end. The canceller's connection closes.
        this.endSession(id);
        return;
      }
      session.started = true;
      this.send(session, this.startupReply);
    }
    const { frames: found, used } = frames(input);
    session.inbox = input.subarray(used).slice();
    const terminate = found.findIndex((frame) => frame.type === "X");
    const requests = terminate >= 0 ? found.slice(0, terminate) : found;
    if (requests.length > 0) this.onRequests(session, input, requests);
    if (terminate >= 0) this.endSession(id);
  }

  private onRequests(session: Session, input: Uint8Array, found: Frame[]): void {
    const first = found[0]!;
    const listen =
      found.length === 1 && first.type === "Q" ? listenStatement(sqlOf(input, first)) : undefined;
    if (listen && this.holder !== session) {
      this.applyListen(session, listen);
      if (listen.verb === "LISTEN" && !this.listening.has(listen.channel))
        this.pendingListens.add(listen.channel);
      this.send(session, concat([commandComplete(listen.verb), readyForQuery("I")]));
      return;
    }
    const copy = found.some(
      (frame) => (frame.type === "Q" || frame.type === "P") && isCopyFromStdin(sqlOf(input, frame)),
    );
    if (copy) {
      const status = this.holder === session && session.status !== "open" ? session.status : "I";
      this.send(
        session,
        concat([
          errorResponse(
            "0A000",
            "COPY FROM STDIN is not supported by the embedded database (PGlite); use INSERT",
          ),
          readyForQuery(status),
        ]),
      );
      return;
    }
    if (listen) {
      // The holder's own LISTEN or UNLISTEN joins its transaction, which may roll back, or
      // commit an UNLISTEN for every session: listen again to all that is wanted once idle.
      this.applyListen(session, listen);
      for (const channel of this.wantedChannels()) this.pendingListens.add(channel);
      this.listening.clear();
    }
    this.work.push({ session, bytes: input.slice(first.start, found[found.length - 1]!.end) });
  }

  private applyListen(session: Session, listen: Listen): void {
    if (listen.verb === "LISTEN") session.channels.add(listen.channel);
    else if (listen.channel === "*") session.channels.clear();
    else session.channels.delete(listen.channel);
  }

  private wantedChannels(): Set<string> {
    const wanted = new Set<string>();
    for (const session of this.sessions.values()) for (const channel of session.channels) wanted.add(channel);
    return wanted;
  }

  private endSession(id: number): void {
    const session = this.sessions.get(id);
    if (!session) return;
    this.sessions.delete(id);
    for (let i = this.work.length - 1; i >= 0; i--)
      if (this.work[i]!.session === session) this.work.splice(i, 1);
    this.ended.push(session);
  }

  /** The one place that runs PGlite: ended sessions, then pending LISTENs, then requests. */
  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.failed) {
        const session = this.ended.shift();
        if (session) {
          await this.release(session);
          continue;
        }
        if (await this.settleListens()) continue;
        if (await this.closeStatements()) continue;
        const index = this.holder ? this.work.findIndex((item) => item.session === this.holder) : 0;
        const item = index >= 0 ? this.work[index] : undefined;
        if (!item) break;
        this.work.splice(index, 1);
        await this.run(item.session, item.bytes);
        // Let the main thread's messages (a LISTEN, an end) in between requests.
        if (this.work.length > 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.running = false;
    }
  }

  private async release(session: Session): Promise<void> {
    if (this.holder === session) {
      // Its client went away inside a transaction: end any extended query, then roll back.
      const reply = await this.execute(SYNC_MESSAGE);
      if (reply && reply.status !== "I") await this.execute(queryMessage("ROLLBACK"));
      this.setHolder(undefined);
    }
    this.post({ op: "ended", session: session.id });
  }

  /**
   * Makes pending LISTENs effective: at once if the backend is idle (then they are committed),
   * or inside the holder's transaction if it is open and sound. True if it ran anything.
   */
  private async settleListens(): Promise<boolean> {
    if (this.holder && this.holder.status !== "T") return false;
    const channels = [...this.pendingListens].filter((channel) => !this.injected.has(channel));
    if (channels.length === 0) return false;
    const sql = channels.map((channel) => `LISTEN ${quoteIdentifier(channel)};`).join("");
    const result = await this.execute(queryMessage(sql));
    if (result) this.route(result);
    for (const channel of channels) {
      if (this.holder) {
        this.injected.add(channel);
      } else {
        this.pendingListens.delete(channel);
        this.listening.add(channel);
      }
    }
    return true;
  }

  private setHolder(session: Session | undefined): void {
    if (this.holder !== session) this.injected.clear();
    this.holder = session;
  }

  private async run(session: Session, bytes: Uint8Array): Promise<void> {
    const idle = session.status === "I";
    let prepared = this.statements.prepare(bytes);
    let result = await this.execute(prepared.bytes);
    if (!result) return;
    if (prepared.parse === "cached" && result.errorCode && STATEMENT_GONE.has(result.errorCode)) {
      prepared.forget?.();
      // Outside a transaction the failed Bind changed nothing: run it again, prepared anew.
      if (idle) {
        this.route(result);
        prepared = this.statements.prepare(bytes);
        result = await this.execute(prepared.bytes);
        if (!result) return;
      }
    }
    if (prepared.parse === "new" && result.reply[0] === StatementCache.parseComplete[0]) prepared.keep?.();
    session.status = result.status ?? "open";
    // Only the holder runs while there is one, so an idle reply always frees the backend.
    this.setHolder(session.status === "I" ? undefined : session);
    const reply =
      prepared.parse === "cached" ? concat([StatementCache.parseComplete, result.reply]) : result.reply;
    // Sent (transferred) first, then its notifications: after this, `reply` is detached.
    this.send(session, reply, true);
    this.route(result);
  }

  /** Closes the prepared statements the cache let go, when that cannot disturb a transaction. */
  private async closeStatements(): Promise<boolean> {
    if (this.holder && this.holder.status !== "T") return false;
    const request = this.statements.takeClosing();
    if (!request) return false;
    const result = await this.execute(request);
    if (result) this.route(result);
    return true;
  }

  /** Sends each notification of a reply to the sessions listening on its channel. */
  private route(result: Executed): void {
    for (const [channel, notification] of result.notifications) {
      for (const listener of this.sessions.values()) {
        if (listener.channels.has(channel)) this.send(listener, notification);
      }
    }
  }

  /**
   * Runs request bytes on the backend. Returns the reply without its notifications (those
   * apart, for `route`), its last transaction status (none in the middle of an extended
   * query) and its first error's code; undefined if the PGlite died.
   */
  private async execute(bytes: Uint8Array): Promise<Executed | undefined> {
    const chunks: Uint8Array[] = [];
    try {
      // PGlite's Node filesystem writes through at each write: there is nothing to sync.
      await this.db.execProtocolRawStream(bytes, {
        syncToFs: false,
        onRawData: (data) => chunks.push(data.slice()),
      });
    } catch (error) {
      this.failed = true;
      this.post({ op: "fatal", message: `the embedded database stopped: ${describe(error)}` });
      return undefined;
    }
    const reply = concat(chunks);
    const found = frames(reply).frames;
    const notifications = found.filter((frame) => frame.type === "A");
    const error = found.find((frame) => frame.type === "E");
    return {
      reply:
        notifications.length === 0
          ? reply
          : concat(found.filter((f) => f.type !== "A").map((f) => reply.subarray(f.start, f.end))),
      notifications: notifications.map((frame) => [
        notificationChannel(reply, frame),
        reply.slice(frame.start, frame.end),
      ]),
      status: lastStatus(reply, found),
      errorCode: error ? errorCode(reply, error) : undefined,
    };
  }

  async close(): Promise<void> {
    while (this.running) await new Promise((resolve) => setImmediate(resolve));
    this.failed = true;
    await this.db.close();
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "object" && error !== null && "status" in error)
    return `exit status ${String(error.status)}`;
  return String(error);
}

// A global of Node that TypeScript's ES library (no DOM) does not declare.
declare const WebAssembly: { compile(bytes: Uint8Array): Promise<object> };

/** PGlite's WebAssembly, compiled, and its filesystem bundle, read from its package. */
async function loadPGliteArtifacts(): Promise<Pick<PGliteOptions, "pgliteWasmModule" | "fsBundle">> {
  const entry = import.meta.resolve("@electric-sql/pglite");
  const [wasm, bundle] = await Promise.all([
    readFile(new URL("./pglite.wasm", entry)),
    readFile(new URL("./pglite.data", entry)),
  ]);
  const compiled = await WebAssembly.compile(wasm);
  return {
    /* eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- PGlite types it as
       WebAssembly.Module, a name TypeScript's ES library leaves unresolved here. */
    pgliteWasmModule: compiled as PGliteOptions["pgliteWasmModule"],
    fsBundle: new Blob([bundle]),
  };
}

async function main(options: OwnerOptions): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("pglite-owner runs in a worker thread");
  const post = (message: FromOwner, transfer?: ArrayBuffer[]) => port.postMessage(message, transfer);
  let owner: Owner | undefined;
  const early: ToOwner[] = [];
  let openNow: () => void = () => undefined;
  const mayOpen = options.waitForOpen ? new Promise<void>((resolve) => (openNow = resolve)) : undefined;
  port.on("message", (message: ToOwner) => {
    if (message.op === "open") {
      openNow();
      return;
    }
    if (message.op === "close") {
      void (owner?.close() ?? Promise.resolve()).finally(() => {
        post({ op: "closed" });
        port.close();
      });
      return;
    }
    if (owner) owner.receive(message);
    else early.push(message);
  });
  try {
    const artifacts = await loadPGliteArtifacts();
    await mayOpen;
    if (!options.dataDir.startsWith("memory://") && !existsSync(join(options.dataDir, "PG_VERSION"))) {
      throw new Error(`${options.dataDir} is not a PostgreSQL data directory (no PG_VERSION)`);
    }
    const db = await PGlite.create(options.dataDir, {
      ...artifacts,
      startParams: [...PGlite.defaultStartParams, "-c", `shared_buffers=${SHARED_BUFFERS}`],
    });
    const chunks: Uint8Array[] = [];
    await db.execProtocolRawStream(startupPacket({ user: "postgres", database: "postgres" }), {
      syncToFs: false,
      onRawData: (data) => chunks.push(data.slice()),
    });
    owner = new Owner(db, concat(chunks), post);
    post({ op: "ready" });
    for (const message of early.splice(0)) owner.receive(message);
  } catch (error) {
    post({ op: "failed", message: describe(error) });
    port.close();
  }
}

void main(workerData as OwnerOptions);
