/**
 * The one place that picks a BullMQ backend: Redis, PostgreSQL, or PostgreSQL embedded in
 * the process (PGlite through `pglite-pool.ts`). Everything above it sees a `Broker` and the
 * same BullMQ Queue and Worker API, whatever the backend.
 *
 * It never connects at import time, and whatever `openBroker` opened, `close()` closes.
 */
import {
  createPostgresBackend,
  createRedisBackend,
  runMigrations,
  withBackend,
  type IQueueBackend,
  type Processor,
  type Queue,
  type Worker,
  type WorkerOptions,
} from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import pg from "pg";
import type { PGlitePool } from "./pglite-pool.js";

export type BrokerKind = "redis" | "postgres" | "embedded";

export type BrokerTarget =
  | { kind: "redis"; url: string }
  | { kind: "postgres"; connectionString: string }
  | { kind: "embedded"; pool: PGlitePool };

/* eslint-disable @typescript-eslint/no-explicit-any -- BullMQ's job data and results are
   untyped at this layer; tasks type them at the edges (task.ts). */
export type BrokerQueue = Queue<any, any, string, any, any, string, IQueueBackend, any>;
export type BrokerWorker = Worker<any, any, string, IQueueBackend, any, any>;
export type BrokerProcessor = Processor<any, any, string>;
/* eslint-enable @typescript-eslint/no-explicit-any */

export type BrokerWorkerOptions = Omit<WorkerOptions, "connection">;

export interface Broker {
  readonly kind: BrokerKind;
  /** The queue of that name, opened once and kept until `close()`. */
  queue(name: string): BrokerQueue;
  /** A new worker; the caller closes it (before closing the broker). */
  createWorker(name: string, processor: BrokerProcessor, options: BrokerWorkerOptions): BrokerWorker;
  /** Resolves if the broker answers, throws otherwise. */
  ping: () => Promise<void>;
  close(): Promise<void>;
}

export const BULLMQ_SCHEMA = "bullmq";

/** Runs BullMQ's PostgreSQL migrations once, under its advisory lock, on one dedicated session. */
async function migrate(client: pg.ClientBase) {
  await runMigrations(client, BULLMQ_SCHEMA);
}

export function redisOptionsFromUrl(url: string): RedisOptions {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, "");
  return {
    host: parsed.hostname || "127.0.0.1",
    port: parsed.port ? Number(parsed.port) : 6379,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: db ? Number(db) : 0,
    tls: parsed.protocol === "rediss:" ? {} : undefined,
  };
}

export async function openBroker(target: BrokerTarget): Promise<Broker> {
  switch (target.kind) {
    case "redis":
      return openRedisBroker(target.url);
    case "postgres":
      return openPostgresBroker(target.connectionString);
    case "embedded":
      return openEmbeddedBroker(target.pool);
  }
}

function brokerOver(
  kind: BrokerKind,
  classes: {
    Queue: new (name: string, opts: never) => BrokerQueue;
    Worker: new (...args: never[]) => BrokerWorker;
  },
  connection: (role: "queue" | "worker") => unknown,
  ping: () => Promise<void>,
  closeConnections: () => Promise<void>,
): Broker {
  const queues = new Map<string, BrokerQueue>();
  let closed = false;
  return {
    kind,
    queue(name) {
      if (closed) throw new Error("the broker is closed");
      let queue = queues.get(name);
      if (!queue) {
        queue = new classes.Queue(name, { connection: connection("queue") } as never);
        // A queue's connection errors are reported by ping() and by the calls that fail; an
        // 'error' event without a listener would crash the process instead.
        queue.on("error", () => undefined);
        queues.set(name, queue);
      }
      return queue;
    },
    createWorker(name, processor, options) {
      if (closed) throw new Error("the broker is closed");
      const Worker = classes.Worker as unknown as new (
        name: string,
        processor: BrokerProcessor,
        options: WorkerOptions,
      ) => BrokerWorker;
      return new Worker(name, processor, { ...options, connection: connection("worker") } as WorkerOptions);
    },
    ping,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...queues.values()].map((queue) => queue.close()));
      await closeConnections();
    },
  };
}

async function openRedisBroker(url: string): Promise<Broker> {
  const options = redisOptionsFromUrl(url);
  // The producer side fails fast while Redis is down (the dispatcher then leaves recipients
  // pending and tries again later) instead of queueing commands in memory without bound.
  const producer = new Redis({
    ...options,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    lazyConnect: true,
  });
  producer.on("error", () => undefined);
  await producer.connect().catch(() => undefined);
  const { Queue, Worker } = withBackend(createRedisBackend);
  return brokerOver(
    "redis",
    { Queue: Queue, Worker: Worker },
    // Workers get options, not the producer: they need their own connections that wait out
    // an outage (maxRetriesPerRequest: null) instead of failing fast.
    (role) => (role === "queue" ? producer : { ...options, maxRetriesPerRequest: null }),
    async () => {
      if (producer.status !== "ready")
        throw new Error(`Redis at ${options.host}:${options.port} is ${producer.status}`);
      await producer.ping();
    },
    async () => {
      producer.disconnect();
    },
  );
}

async function openPostgresBroker(connectionString: string): Promise<Broker> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await migrate(client);
  } finally {
    await client.end();
  }
  const probe = new pg.Pool({ connectionString, max: 1 });
  probe.on("error", () => undefined);
  const { Queue, Worker } = withBackend(createPostgresBackend);
  return brokerOver(
    "postgres",
    { Queue: Queue, Worker: Worker },
    () => ({ connectionString, schema: BULLMQ_SCHEMA, max: 4 }),
    async () => {
      await probe.query("SELECT 1");
    },
    () => probe.end(),
  );
}

async function openEmbeddedBroker(pool: PGlitePool): Promise<Broker> {
  const client = await pool.connect();
  try {
    await migrate(client);
  } finally {
    client.release();
  }
  // BullMQ's SQL names its tables unqualified; the store qualifies its own (schema lovage).
  await pool.query(`SET search_path TO ${BULLMQ_SCHEMA}, public`);
  const { Queue, Worker } = withBackend(createPostgresBackend);
  return brokerOver(
    "embedded",
    { Queue: Queue, Worker: Worker },
    () => pool,
    async () => {
      await pool.query("SELECT 1");
    },
    async () => undefined,
  );
}
