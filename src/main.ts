/**
 * Wiring: config → store → broker → tasks → worker / dispatcher / HTTP. `lovage start` runs
 * every role in one process (the embedded topology); `lovage api` and `lovage worker` run one
 * each. Whatever is opened here is closed in reverse order by `close()`. Nothing connects at
 * import time.
 */
import { createPrivateKey, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { buildApp } from "./api/app.js";
import { checkBroker } from "./broker-check.js";
import { redactUrl, secretsInConfig, type Config } from "./config.js";
import { saveCaughtMessage } from "./db/caught-messages.js";
import { openDatabase, type Store } from "./db/open.js";
import { expireLeases } from "./db/recipients.js";
import { createUserIfMissing, getOrCreateSetting, upsertUser } from "./db/users.js";
import { createScheduleStore } from "./db/schedules.js";
import { forgetOldWorkers, recordHeartbeat } from "./db/workers.js";
import { createRedactingLogger } from "./logger.js";
import { openMailCatcher, type MailCatcher } from "./mail/catcher.js";
import { createDispatcher, type Dispatcher } from "./mail/dispatcher.js";
import { createSendBatchTask } from "./mail/send-batch.js";
import { recordJobFigures } from "./db/figures.js";
import { createJobFigures, startFigures } from "./monitor/figures.js";
import { knownQueues } from "./api/routes/queues.js";
import { createQueueAdmin } from "./queue/queues.js";
import type { MessageSettings } from "./mail/message.js";
import type { TestTransport } from "./mail/preview.js";
import { createTokens, type Tokens } from "./mail/tokens.js";
import { createDispatchStore, createFeedbackStore, createFiguresStore, createSendStore } from "./stores.js";
import { openBounceListener } from "./mail/bounce-listener.js";
import { createSmtpTransport, type Transport } from "./mail/transport-pool.js";
import {
  ehloNameOf,
  type DkimSettings,
  type SmtpConnectionSettings,
} from "./mail/smtp-connection-options.js";
import { createRateCounters, type CounterBackend } from "./mail/rate-limits.js";
import type { SmtpEvent } from "./mail/smtp-events.js";
import { parseSmtpServerUrls } from "./mail/smtp-server-url.js";
import {
  forgetOldSmtpEvents,
  forgetServerFigures,
  recordServerFigures,
  recordSmtpEvents,
} from "./db/smtp.js";
import { Redis } from "ioredis";
import { openBroker, type Broker } from "./queue/connection.js";
import { createProducer } from "./queue/producer.js";
import { createSchedules } from "./queue/schedules.js";
import { TaskRegistry, type AnyTask, type Retention } from "./queue/task.js";
import { createWorkerId, startWorker, type RunningWorker } from "./queue/worker.js";
import {
  SettingError,
  connectFailure,
  listenFailure,
  listenSetting,
  messageOf,
  naming,
} from "./setting-error.js";

export interface Roles {
  /** HTTP API, dashboard and dispatcher. */
  api: boolean;
  /** Runs jobs: sends mail and runs tasks. */
  worker: boolean;
}

export interface RunningLovage {
  /** Where the HTTP server listens, when this process has the api role. */
  url: string | undefined;
  /** The generated admin password, on the first start only. */
  generatedAdminPassword: string | undefined;
  catcherUrl: string | undefined;
  /** This process's worker, when it has the worker role. */
  worker: RunningWorker | undefined;
  /**
   * Resolves when this process's worker has stopped because someone asked it to
   * (POST /api/workers/:id/shutdown); a process with only the worker role then exits.
   */
  workerStopped: Promise<void> | undefined;
  logger: Logger;
  close(): Promise<void>;
}

export const ADMIN_USER = "admin";
/** How often a worker reports itself; `GET /api/workers` drops one silent for three beats. */
export const HEARTBEAT_MS = 5_000;
export const WORKER_TIMEOUT_MS = 3 * HEARTBEAT_MS;
/**
 * The sender of campaigns without one when nothing else is set and mail goes to the catcher
 * only: no one outside ever sees it. With a relay there is no such default (LOVAGE_DEFAULT_FROM).
 */
export const CATCHER_FROM = "Lovage <no-reply@lovage.localhost>";

/** The secret under the opaque ids and unsubscribe tokens (mail/tokens.ts), made once per deployment. */
export async function mailTokens(store: Store): Promise<Tokens> {
  return createTokens(
    await getOrCreateSetting(store.db, "mail_token_secret", () => randomBytes(32).toString("base64url")),
  );
}

/** What every message shares, for the send-batch task and the test send. */
export async function messageSettings(
  store: Store,
  config: Pick<Config, "publicUrl" | "unsubscribeMailto" | "bounceAddress">,
): Promise<MessageSettings> {
  return {
    tokens: await mailTokens(store),
    publicUrl: config.publicUrl,
    unsubscribeMailto: config.unsubscribeMailto,
    bounceAddress: config.bounceAddress,
  };
}

export function createLogger(
  config: Pick<Config, "logLevel"> & Parameters<typeof secretsInConfig>[0],
): Logger {
  return createRedactingLogger({ level: config.logLevel, secrets: secretsInConfig(config) });
}

/** Imports each task module and registers every task it exports. */
export async function loadTasks(
  modules: readonly string[],
  registry = new TaskRegistry(),
): Promise<TaskRegistry> {
  for (const specifier of modules) {
    const url = specifier.startsWith("lovage:")
      ? new URL(`../${specifier.slice("lovage:".length)}`, import.meta.url).href
      : pathToFileURL(resolve(specifier)).href;
    let exported: Record<string, unknown>;
    try {
      exported = (await import(url)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`LOVAGE_TASKS: cannot load "${specifier}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    const tasks = Object.values(exported).filter(isTask);
    if (tasks.length === 0) throw new Error(`LOVAGE_TASKS: "${specifier}" exports no task (use defineTask)`);
    registry.register(...tasks);
  }
  return registry;
}

function isTask(value: unknown): value is AnyTask {
  const task = value as Partial<AnyTask> | null;
  return (
    !!task &&
    typeof task.name === "string" &&
    typeof task.queue === "string" &&
    typeof task.handler === "function"
  );
}

/**
 * Reports the worker in the registry every HEARTBEAT_MS; returns the function that stops it and
 * records the worker as stopped. The store may be down: a missed beat is only logged. A beat
 * that reads back a shutdown request calls `onShutdownRequested` once.
 */
function startHeartbeat(
  store: Store,
  worker: RunningWorker,
  logger: Logger,
  onShutdownRequested: () => void,
): () => Promise<void> {
  const snapshot = () => ({
    id: worker.id,
    host: worker.host,
    pid: process.pid,
    queues: worker.queues,
    concurrency: worker.concurrency,
    startedAt: worker.startedAt,
    ...worker.stats(),
  });
  let asked = false;
  let inFlight: Promise<void> = Promise.resolve();
  const beat = () =>
    (inFlight = recordHeartbeat(store.db, snapshot()).then(
      (answer) => {
        if (answer.shutdownRequested && !asked) {
          asked = true;
          onShutdownRequested();
        }
      },
      (error: unknown) => logger.warn({ err: (error as Error).message }, "heartbeat not recorded"),
    ));
  void beat();
  void forgetOldWorkers(store.db).catch(() => undefined);
  const timer = setInterval(() => void beat(), HEARTBEAT_MS);
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= (async () => {
      clearInterval(timer);
      // A beat still on its way would land after the last one and list the worker again.
      await inFlight;
      await recordHeartbeat(store.db, snapshot(), true).catch(() => undefined);
    })());
}

/** How often a worker writes its view of the SMTP servers, and its events, to the store. */
export const SMTP_REPORT_MS = 2_000;

/**
 * Writes the servers' figures and the events of this worker to the store every SMTP_REPORT_MS,
 * so the API (maybe another process) can answer /readyz, /api/smtp and the campaign view; the
 * returned function stops it and removes this worker's figures. A store that is down only
 * delays the report.
 */
function reportSmtp(
  store: Store,
  workerId: string,
  transport: Transport,
  events: SmtpEvent[],
  logger: Logger,
): () => Promise<void> {
  let running: Promise<void> | undefined;
  const report = async () => {
    const batch = events.splice(0);
    try {
      await recordSmtpEvents(store.db, workerId, batch);
      await recordServerFigures(store.db, workerId, transport.figures());
    } catch (error) {
      events.unshift(...batch);
      logger.warn({ err: (error as Error).message }, "smtp figures not recorded");
    }
  };
  void forgetOldSmtpEvents(store.db).catch(() => undefined);
  const timer = setInterval(() => {
    running ??= report().finally(() => (running = undefined));
  }, SMTP_REPORT_MS);
  return async () => {
    clearInterval(timer);
    await running;
    await report();
    await forgetServerFigures(store.db, workerId).catch(() => undefined);
  };
}

/** Something opened that main closes, in reverse order. */
interface Opened {
  close(): Promise<void> | void;
}

/** The store, migrated; on an embedded store, rows a crash left `sending` become `unknown`. */
export async function openStore(config: Config, logger: Logger): Promise<Store> {
  const store = await naming(
    config.databaseUrl ? "LOVAGE_DATABASE_URL" : "LOVAGE_DATA_DIR",
    openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }),
    (error) =>
      config.databaseUrl
        ? connectFailure(error, { url: config.databaseUrl, defaultPort: 5432 })
        : messageOf(error),
  );
  if (store.kind === "embedded") {
    try {
      // One process owns an embedded data directory: any row still `sending` was left by a
      // process that died mid-transaction, so it cannot wait for a lease to run out.
      const expired = await expireLeases(store.db, { all: true });
      if (expired > 0) logger.warn({ expired }, "recipients left sending by a crash are now unknown");
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}

/** The one place that picks the broker: Redis when given, else BullMQ on the store's database. */
export function openBrokerFor(
  config: Pick<Config, "brokerUrl" | "databaseUrl">,
  store: Store,
): Promise<Broker> {
  return naming(
    config.brokerUrl ? "LOVAGE_BROKER_URL" : config.databaseUrl ? "LOVAGE_DATABASE_URL" : "LOVAGE_DATA_DIR",
    openBroker(
      config.brokerUrl
        ? { kind: "redis", url: config.brokerUrl }
        : store.kind === "postgres"
          ? { kind: "postgres", connectionString: config.databaseUrl! }
          : { kind: "embedded", pool: store.pool },
    ),
    (error) =>
      config.brokerUrl || config.databaseUrl
        ? connectFailure(error, {
            url: config.brokerUrl ?? config.databaseUrl,
            defaultPort: config.brokerUrl ? 6379 : 5432,
          })
        : messageOf(error),
  );
}

function retentionOf(config: Config): Retention {
  return { completedMs: config.taskResultRetentionMs, failedMs: config.taskErrorRetentionMs };
}

/**
 * Records the schedules this process's tasks declare and applies every stored schedule to the
 * broker. Every process does it at start (workers and API alike, whatever their number): the
 * job schedulers still run each tick once.
 */
async function syncSchedules(broker: Broker, store: Store, tasks: TaskRegistry, retention: Retention) {
  await createSchedules({ broker, store: createScheduleStore(store.db), tasks, retention }).sync(tasks.all());
}

/** The files the SMTP connections need, read once at start; a file that cannot be read stops it. */
export async function smtpConnectionSettings(config: Config): Promise<SmtpConnectionSettings> {
  const read = (setting: string, path: string | undefined) =>
    path === undefined
      ? Promise.resolve(undefined)
      : naming(setting, readFile(path, "utf8"), (error) => `cannot read ${path}: ${messageOf(error)}`);
  const ca = await read("LOVAGE_SMTP_CA_FILE", config.smtpCaFile);
  if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----")) {
    throw new SettingError("LOVAGE_SMTP_CA_FILE", `${config.smtpCaFile} holds no PEM certificate`);
  }
  let dkim: DkimSettings | undefined;
  if (config.dkim) {
    const privateKey = (await read("LOVAGE_DKIM_KEY_FILE", config.dkim.keyFile))!;
    try {
      createPrivateKey(privateKey);
    } catch (error) {
      throw new SettingError(
        "LOVAGE_DKIM_KEY_FILE",
        `${config.dkim.keyFile} holds no private key in PEM form (${messageOf(error)})`,
        { cause: error },
      );
    }
    dkim = { domainName: config.dkim.domain, keySelector: config.dkim.selector, privateKey };
  }
  return {
    ca,
    ehloName: ehloNameOf({ ehloName: config.smtpEhloName, publicUrl: config.publicUrl }),
    dkim,
  };
}

/** The worker role: SMTP (or the mail catcher), the send-batch task and the user's tasks, heartbeats. */
async function startWorkerRole(
  config: Config,
  parts: WorkerParts,
  opened: Opened[],
): Promise<{ worker: RunningWorker; catcherUrl: string | undefined; stopped: Promise<void> }> {
  const { store, broker, logger } = parts;
  let smtpUrls = config.smtpUrls;
  let catcher: MailCatcher | undefined;
  if (smtpUrls.length === 0) {
    catcher = await naming(
      "LOVAGE_CATCHER_PORT",
      openMailCatcher({
        store: { saveCaughtMessage: (message) => saveCaughtMessage(store.db, message) },
        port: config.catcherPort,
        logger,
      }),
      (error) => listenFailure(error, config.catcherPort),
    );
    opened.push(catcher);
    // The catcher offers no STARTTLS (loopback only); the URL says so rather than rely on it.
    smtpUrls = [`${catcher.url}?tls=none`];
    parts.smtp.catcherUrl = smtpUrls[0];
  }
  const servers = await naming(
    "LOVAGE_SMTP_URL",
    Promise.resolve().then(() => parseSmtpServerUrls(smtpUrls)),
    messageOf,
  );
  const workerId = createWorkerId();
  // The counters of the rate limits live where every worker sees them: Redis when the broker is
  // Redis, else the store (PostgreSQL, or the embedded PGlite over its pg.Pool).
  let backend: CounterBackend;
  if (config.brokerUrl) {
    const redis = new Redis(config.brokerUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
    redis.on("error", () => undefined);
    opened.push({ close: () => void redis.disconnect() });
    backend = { kind: "redis", client: redis };
  } else {
    backend = { kind: "postgres", pool: store.pool };
  }
  const events: SmtpEvent[] = [];
  const transport: Transport = createSmtpTransport(servers, {
    poolSize: config.smtpPoolSize,
    timeoutMs: config.smtpTimeoutMs,
    connection: await smtpConnectionSettings(config),
    counters: createRateCounters(backend),
    groups: config.domainGroups,
    pace: { suspendPattern: config.smtpSuspendPattern, suspendMs: config.smtpSuspendMs },
    onEvent: (event) => {
      logger.info({ smtp: event.name, event: event.kind, reply: event.reply, rate: event.rate }, "smtp pace");
      if (events.length < 10_000) events.push(event);
    },
  });
  opened.push(transport);
  opened.push({ close: reportSmtp(store, workerId, transport, events, logger) });
  const tasks = new TaskRegistry().register(
    ...parts.userTasks.all(),
    createSendBatchTask({
      store: createSendStore(store.db),
      transport,
      workerId,
      maxAttempts: config.maxAttempts,
      retryBaseMs: config.retryBaseMs,
      retryMaxAgeMs: config.retryMaxAgeMs,
      errorBudget: config.errorBudget,
      leaseMs: config.leaseMs,
      message: await messageSettings(store, config),
      logger,
    }),
  );
  const jobFigures = createJobFigures({ record: (jobs) => recordJobFigures(store.db, jobs), logger });
  // Before the worker: closed after it, so that its last jobs are written.
  opened.push(jobFigures);
  const worker = await startWorker({
    id: workerId,
    broker,
    registry: tasks,
    queues: config.queues,
    concurrency: config.concurrency,
    lockDurationMs: config.jobLockMs,
    logger,
    onJobFinished: (job) => jobFigures.add(job),
  });
  opened.push({ close: () => worker.close({ timeoutMs: config.shutdownTimeoutMs }) });
  let stoppedByRequest!: () => void;
  const stopped = new Promise<void>((resolve) => (stoppedByRequest = resolve));
  const stopHeartbeat = startHeartbeat(store, worker, logger, () => {
    // As Celery's remote shutdown: stop taking jobs, finish those in flight, then leave the
    // registry. The rest of the process (an API role beside it) keeps running.
    logger.info({ id: worker.id }, "shutdown requested: finishing jobs in flight");
    void worker
      .close({ timeoutMs: config.shutdownTimeoutMs })
      .then(stopHeartbeat)
      .catch((error: unknown) => logger.error({ err: error }, "error while stopping the worker"))
      .finally(stoppedByRequest);
  });
  opened.push({ close: stopHeartbeat });
  return { worker, catcherUrl: catcher?.url, stopped };
}

/** The names campaigns may give as `servers`: LOVAGE_SMTP_URL's, or the catcher's once it listens. */
function smtpServerNames(config: Config, parts: WorkerParts): string[] {
  const urls =
    config.smtpUrls.length > 0 ? config.smtpUrls : parts.smtp.catcherUrl ? [parts.smtp.catcherUrl] : [];
  return parseSmtpServerUrls(urls).map((spec) => spec.name);
}

interface WorkerParts {
  store: Store;
  broker: Broker;
  userTasks: TaskRegistry;
  logger: Logger;
  smtp: { catcherUrl: string | undefined };
}

/**
 * The transport of test sends: one connection to the first SMTP server (or to the campaign's
 * own servers when it names them), or to this process's catcher, opened at the first test send.
 * Undefined when this process has neither.
 */
function testTransportFor(
  config: Config,
  parts: WorkerParts,
  roles: Roles,
  opened: Opened[],
): TestTransport | undefined {
  if (config.smtpUrls.length === 0 && !roles.worker) return undefined;
  let transport: Promise<Transport> | undefined;
  opened.push({ close: async () => (await transport?.catch(() => undefined))?.close() });
  return {
    async send(message, options) {
      // A failed opening is not kept: the next test send tries again.
      transport ??= (async () => {
        const catcherUrl = parts.smtp.catcherUrl;
        if (config.smtpUrls.length === 0 && catcherUrl === undefined)
          throw new Error("the mail catcher has not started yet; try again in a moment");
        const urls = config.smtpUrls.length > 0 ? config.smtpUrls : [catcherUrl!];
        return createSmtpTransport(urls, {
          poolSize: 1,
          timeoutMs: config.smtpTimeoutMs,
          connection: await smtpConnectionSettings(config),
        });
      })();
      transport.catch(() => (transport = undefined));
      const first = smtpServerNames(config, parts)[0];
      return (await transport).send(message, { servers: options?.servers ?? (first ? [first] : null) });
    },
  };
}

/** The API role: users and the signing secret, the dispatcher, and the HTTP server. */
async function startApiRole(
  config: Config,
  parts: WorkerParts,
  roles: Roles,
  opened: Opened[],
): Promise<{ url: string; generatedAdminPassword: string | undefined }> {
  const { store, broker, logger } = parts;
  const jwtSecret =
    config.jwtSecret ??
    (await getOrCreateSetting(store.db, "jwt_secret", () => randomBytes(48).toString("base64url")));
  let generatedAdminPassword: string | undefined;
  if (config.adminPassword) {
    await upsertUser(store.db, ADMIN_USER, config.adminPassword, "admin");
  } else {
    const candidate = randomBytes(12).toString("base64url");
    if (await createUserIfMissing(store.db, ADMIN_USER, candidate)) generatedAdminPassword = candidate;
  }
  const producer = createProducer(broker, { retention: retentionOf(config) });
  const dispatcher: Dispatcher = createDispatcher({
    store: createDispatchStore(store.db),
    producer,
    batchSize: config.batchSize,
    logger,
  });
  opened.push(dispatcher);
  const admin = createQueueAdmin(broker);
  opened.push(
    startFigures({
      store: createFiguresStore(store.db),
      depths: async () =>
        (await Promise.all(knownQueues({ registry: parts.userTasks }).map((name) => admin.info(name)))).map(
          ({ name, counts }) => ({
            queue: name,
            waiting: counts.waiting,
            active: counts.active,
            delayed: counts.delayed,
            failed: counts.failed,
          }),
        ),
      retentionMs: config.figuresRetentionDays * 24 * 3600_000,
      logger,
    }),
  );
  const app: FastifyInstance = await buildApp({
    db: store.db,
    broker,
    producer,
    registry: parts.userTasks,
    dispatcher,
    jwtSecret,
    tokenTtlMs: config.tokenTtlMs,
    maxBodyBytes: config.maxBodyBytes,
    maxUploadBytes: config.maxUploadBytes,
    defaultFrom: config.defaultFrom ?? (config.smtpUrls.length === 0 ? CATCHER_FROM : undefined),
    messageSettings: await messageSettings(store, config),
    publicUrl: config.publicUrl,
    softBounceLimit: config.softBounceLimit,
    sesWebhookSecret: config.sesWebhookSecret,
    testTransport: testTransportFor(config, parts, roles, opened),
    smtpServerNames: () => smtpServerNames(config, parts),
    workerTimeoutMs: WORKER_TIMEOUT_MS,
    catcherEnabled: config.smtpUrls.length === 0,
    metricsToken: config.metricsToken,
    ping: { database: store.ping, broker: broker.ping },
    webRoot: fileURLToPath(new URL("../web", import.meta.url)),
    logger: logger.child({ component: "http" }),
  });
  opened.push(app);
  if (config.bounceSmtpPort !== undefined) {
    const bounceSmtpPort = config.bounceSmtpPort;
    const listener = await naming(
      (error) => listenSetting(error, { port: "LOVAGE_BOUNCE_SMTP_PORT", host: "LOVAGE_HOST" }),
      openBounceListener({
        store: createFeedbackStore(store.db),
        settings: {
          tokens: await mailTokens(store),
          softBounceLimit: config.softBounceLimit,
          bounceAddress: config.bounceAddress,
        },
        port: bounceSmtpPort,
        host: config.host,
        logger: logger.child({ component: "bounces" }),
      }),
      (error) => listenFailure(error, bounceSmtpPort),
    );
    opened.push(listener);
    logger.info({ url: listener.url }, "bounce listener ready");
  }
  const address = await naming(
    (error) => listenSetting(error, { port: "PORT", host: "LOVAGE_HOST" }),
    app.listen({ host: config.host, port: config.port }),
    (error) => listenFailure(error, config.port),
  );
  return { url: address.replace("[::1]", "localhost"), generatedAdminPassword };
}

export async function startLovage(
  config: Config,
  roles: Roles,
  logger = createLogger(config),
): Promise<RunningLovage> {
  const opened: Opened[] = [];
  const close = async () => {
    for (const part of opened.reverse()) {
      try {
        await part.close();
      } catch (error) {
        // Keep closing the rest: a part that fails to close must not keep the others open.
        logger.error({ err: error }, "error while closing");
      }
    }
    opened.length = 0;
  };

  try {
    logger.info(
      {
        database: config.databaseUrl ? redactUrl(config.databaseUrl) : `embedded (${config.dataDir})`,
        broker: config.brokerUrl ? redactUrl(config.brokerUrl) : config.databaseUrl ? "postgres" : "embedded",
        roles,
      },
      "starting",
    );
    // Before the database: a broker that cannot be reached stops the start before any migration.
    if (config.brokerUrl) await checkBroker(config.brokerUrl);
    const store = await openStore(config, logger);
    opened.push(store);
    const broker = await openBrokerFor(config, store);
    opened.push(broker);
    const parts = {
      store,
      broker,
      userTasks: await loadTasks(config.taskModules),
      logger,
      // The catcher's URL, once this process's worker role has opened it (test sends go there).
      smtp: { catcherUrl: undefined as string | undefined },
    };
    // The API first: it answers /healthz while the worker starts (jobs it enqueues meanwhile wait).
    const api = roles.api ? await startApiRole(config, parts, roles, opened) : undefined;
    const worker = roles.worker ? await startWorkerRole(config, parts, opened) : undefined;
    // Once per process, whatever its roles: both used to apply the schedules in `lovage start`.
    await syncSchedules(broker, store, parts.userTasks, retentionOf(config));
    return {
      url: api?.url,
      generatedAdminPassword: api?.generatedAdminPassword,
      catcherUrl: worker?.catcherUrl,
      worker: worker?.worker,
      workerStopped: worker?.stopped,
      logger,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
