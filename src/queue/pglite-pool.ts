/**
 * PGlite in the shape of a `pg.Pool`, so that BullMQ's PostgreSQL backend and Kysely can both
 * run on the one embedded database.
 *
 * Contract:
 * - PGlite is a single session. Queries run one at a time, in the order they arrive.
 * - A client checked out with `connect()` holds the session only from BEGIN until COMMIT or
 *   ROLLBACK. Outside a transaction its queries take turns with everyone else's. BullMQ checks
 *   a client out for LISTEN and keeps it for good, so holding the session from checkout to
 *   release would deadlock every other query.
 * - A query without parameters goes through PGlite's simple protocol (`exec`), so SQL with
 *   several statements works (BullMQ's migrations are such SQL).
 * - `LISTEN` on a client subscribes that client: notifications arrive as `notification` events
 *   on it, as node-postgres delivers them.
 * - Result values are parsed as node-postgres parses them by default (int8 and numeric as
 *   strings), so code written for `pg` reads the same values from either.
 * - It never closes the PGlite it was given: whoever opened it owns it.
 */
import { EventEmitter } from "node:events";
import type { PGlite, Results } from "@electric-sql/pglite";

export interface PoolQueryResult {
  rows: Record<string, unknown>[];
  rowCount: number;
  command: string;
  fields: { name: string; dataTypeID: number }[];
}

/** Parsers that make PGlite return what node-postgres returns by default. */
export const pgCompatibleParsers = {
  20: (value: string) => value, // int8
  1700: (value: string) => value, // numeric
};

/** Serialises access to the one session; `acquire` resolves with the function that releases it. */
class SessionLock {
  private tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const turn = new Promise<void>((resolve) => (release = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => turn);
    return previous.then(() => release);
  }
}

const TRANSACTION_START = new Set(["BEGIN", "START"]);
const TRANSACTION_END = new Set(["COMMIT", "ROLLBACK", "END", "ABORT"]);

function leadingKeyword(sql: string): string {
  const match = /^\s*(?:--[^\n]*\n\s*)*([A-Za-z]+)/.exec(sql);
  return (match?.[1] ?? "").toUpperCase();
}

function listenTarget(sql: string): { verb: "LISTEN" | "UNLISTEN"; channel: string } | undefined {
  const match =
    /^\s*(?:--[^\n]*\n\s*)*(LISTEN|UNLISTEN)\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\*)\s*;?\s*$/i.exec(
      sql,
    );
  if (!match?.[1] || !match[2]) return undefined;
  const raw = match[2];
  const channel = raw.startsWith('"') ? raw.slice(1, -1).replaceAll('""', '"') : raw.toLowerCase();
  return { verb: match[1].toUpperCase() as "LISTEN" | "UNLISTEN", channel };
}

function toPoolResult(sql: string, results: Results | undefined): PoolQueryResult {
  const rows = (results?.rows ?? []) as Record<string, unknown>[];
  const command = leadingKeyword(sql);
  return {
    rows,
    rowCount: command === "SELECT" ? rows.length : (results?.affectedRows ?? rows.length),
    command,
    fields: (results?.fields ?? []).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })),
  };
}

async function run(db: PGlite, sql: string, params?: readonly unknown[]): Promise<PoolQueryResult> {
  if (params && params.length > 0) {
    return toPoolResult(sql, await db.query(sql, params as unknown[]));
  }
  const all = await db.exec(sql);
  return toPoolResult(sql, all[all.length - 1]);
}

export class PGlitePoolClient extends EventEmitter {
  private releaseSession: (() => void) | undefined;
  private readonly channels = new Set<string>();

  constructor(private readonly pool: PGlitePool) {
    super();
  }

  async query(sql: string, params?: readonly unknown[]): Promise<PoolQueryResult> {
    const listen = listenTarget(sql);
    if (listen) {
      if (listen.verb === "LISTEN") this.channels.add(listen.channel);
      else if (listen.channel === "*") this.channels.clear();
      else this.channels.delete(listen.channel);
    }
    if (this.releaseSession) return this.queryInTransaction(sql, params);
    const release = await this.pool.lock.acquire();
    let holdsSession = false;
    try {
      const result = await run(this.pool.db, sql, params);
      if (TRANSACTION_START.has(leadingKeyword(sql))) {
        this.releaseSession = release;
        holdsSession = true;
      }
      return result;
    } finally {
      if (!holdsSession) release();
    }
  }

  private async queryInTransaction(sql: string, params?: readonly unknown[]): Promise<PoolQueryResult> {
    try {
      return await run(this.pool.db, sql, params);
    } finally {
      if (TRANSACTION_END.has(leadingKeyword(sql))) this.endTransaction();
    }
  }

  private endTransaction(): void {
    const release = this.releaseSession;
    this.releaseSession = undefined;
    release?.();
  }

  /** Delivers a notification if this client listens on its channel. */
  notify(channel: string, payload: string): void {
    if (this.channels.has(channel)) this.emit("notification", { channel, payload });
  }

  /**
   * Returns the client to the pool. A transaction still open here was abandoned by its
   * caller: roll it back so the session is not left inside it.
   */
  release(): void {
    this.pool.forget(this);
    this.channels.clear();
    if (!this.releaseSession) return;
    run(this.pool.db, "ROLLBACK")
      .catch((error: unknown) => this.pool.emit("error", error))
      .finally(() => this.endTransaction());
  }
}

export class PGlitePool extends EventEmitter {
  readonly lock = new SessionLock();
  private readonly clients = new Set<PGlitePoolClient>();
  private readonly stopNotifications: () => void;
  private ended = false;

  constructor(readonly db: PGlite) {
    super();
    this.stopNotifications = db.onNotification((channel, payload) => {
      for (const client of this.clients) client.notify(channel, payload);
    });
  }

  async connect(): Promise<PGlitePoolClient> {
    if (this.ended) throw new Error("the PGlite pool has been ended");
    const client = new PGlitePoolClient(this);
    this.clients.add(client);
    this.emit("connect", client);
    return client;
  }

  forget(client: PGlitePoolClient): void {
    this.clients.delete(client);
  }

  async query(sql: string, params?: readonly unknown[]): Promise<PoolQueryResult> {
    if (this.ended) throw new Error("the PGlite pool has been ended");
    const release = await this.lock.acquire();
    try {
      return await run(this.db, sql, params);
    } finally {
      release();
    }
  }

  /** Waits for queries in flight, then refuses new ones. The PGlite itself stays open. */
  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    const release = await this.lock.acquire();
    release();
    this.stopNotifications();
    this.clients.clear();
  }
}
