/**
 * The backends every queue and store suite runs on: embedded (PGlite in a temporary
 * directory), Redis + PostgreSQL, and PostgreSQL alone. Isolation is by naming: a fresh
 * PostgreSQL database per suite, unique queue names per test. A service that does not answer
 * fails the run with a line saying how to start it; it is never skipped.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { openDatabase, type Store } from "../../src/db/open.js";
import { openBroker, type Broker } from "../../src/queue/connection.js";

export const REDIS_URL = process.env.LOVAGE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const POSTGRES_URL = process.env.LOVAGE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

export type BackendName = "embedded" | "redis+postgres" | "postgres";
export const BACKENDS: BackendName[] = ["embedded", "redis+postgres", "postgres"];

export interface Backend {
  name: BackendName;
  store: Store;
  broker: Broker;
  /** The URLs a `lovage` process would need for the same backend (none when embedded). */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function assertServiceAnswers(name: "Redis" | "PostgreSQL"): Promise<void> {
  try {
    if (name === "Redis") {
      const redis = new Redis(REDIS_URL, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      redis.on("error", () => undefined);
      await redis.connect();
      await redis.ping();
      redis.disconnect();
    } else {
      const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
      await client.connect();
      await client.end();
    }
  } catch (error) {
    const hint =
      name === "Redis"
        ? `start it: redis-server --daemonize yes --port 6379 (or set LOVAGE_TEST_REDIS_URL); ${REDIS_URL}`
        : `start it: pg_ctlcluster --skip-systemctl-redirect 15 main start (or set LOVAGE_TEST_POSTGRES_URL); ${POSTGRES_URL}`;
    throw new Error(`${name} does not answer (${(error as Error).message}): ${hint}`);
  }
}

/** A fresh, empty PostgreSQL database; `drop()` removes it. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  await assertServiceAnswers("PostgreSQL");
  const name = `lovage_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

export async function openBackend(name: BackendName): Promise<Backend> {
  if (name === "embedded") {
    const dataDir = mkdtempSync(join(tmpdir(), "lovage-test-"));
    const store = await openDatabase({ dataDir });
    const broker = await openBroker({ kind: "embedded", pool: store.pool });
    return {
      name,
      store,
      broker,
      env: { LOVAGE_DATA_DIR: dataDir },
      async close() {
        await broker.close();
        await store.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const database = await createTestDatabase();
  const store = await openDatabase({ databaseUrl: database.url, dataDir: tmpdir() });
  let broker: Broker;
  const env: Record<string, string> = { LOVAGE_DATABASE_URL: database.url };
  if (name === "redis+postgres") {
    await assertServiceAnswers("Redis");
    broker = await openBroker({ kind: "redis", url: REDIS_URL });
    env.LOVAGE_BROKER_URL = REDIS_URL;
  } else {
    broker = await openBroker({ kind: "postgres", connectionString: database.url });
  }
  return {
    name,
    store,
    broker,
    env,
    async close() {
      await broker.close();
      await store.close();
      await database.drop();
    },
  };
}

/** A queue name no other test uses, so tests on a shared Redis never see each other's jobs. */
export function uniqueQueue(prefix = "q"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}
