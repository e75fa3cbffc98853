/**
 * The dispatcher turns pending recipients into send-batch jobs, and keeps the store and the
 * broker in step: it gives back rows whose batch the broker no longer has (Redis restarted
 * empty), turns rows whose lease ran out into `unknown`, starts scheduled campaigns and
 * completes finished ones. It runs in every API process; the store's row locks keep several
 * dispatchers from queueing one recipient twice. It never sends mail.
 */
import { randomUUID } from "node:crypto";
import type { JobInfo, JobHandle } from "../queue/producer.js";
import { idempotentPublicJobId, type SendOptions, type TaskRef } from "../queue/task.js";
import { sendBatch, type SendBatchInput } from "./send-batch.js";

/** What dispatching needs from the store; the wiring adapts the database to it. */
export interface DispatchStore {
  /** Rows left `sending` past their lease become `unknown`; returns how many. */
  expireLeases(): Promise<number>;
  /**
   * Scheduled campaigns whose time has come start sending, and campaigns that paused themselves
   * until a time (every server suspended) resume; returns their ids.
   */
  startDueCampaigns(): Promise<number[]>;
  /** Sending campaigns, the most urgent first. */
  sendingCampaigns(): Promise<{ id: number; priority: number }[]>;
  countQueued(): Promise<number>;
  /** Marks up to `limit` due pending recipients of a campaign queued under `batchKey`; returns their ids. */
  claimPending(campaignId: number, batchKey: string, limit: number): Promise<number[]>;
  /** Puts a batch's still-queued rows back to pending; returns how many. */
  releaseBatch(batchKey: string): Promise<number>;
  /** Batches whose rows have been queued for longer than `olderThanMs`. */
  staleQueuedBatches(olderThanMs: number): Promise<string[]>;
  /** Sending campaigns with no open recipient left become completed; returns their ids. */
  completeFinishedCampaigns(): Promise<number[]>;
}

/** The one way Lovage enqueues: the typed producer. */
export interface BatchProducer {
  send<I, O>(task: TaskRef<I, O>, input: I, options?: SendOptions): Promise<JobHandle<Awaited<O>>>;
  getJob(id: string): Promise<Pick<JobInfo, "state"> | undefined>;
}

export interface DispatcherOptions {
  store: DispatchStore;
  producer: BatchProducer;
  batchSize: number;
  /** Most recipients queued at once across the cluster; keeps priorities meaningful. */
  maxQueued?: number;
  /** How often to look for work when there is none; default 500 ms. */
  idleIntervalMs?: number;
  /** How long rows may be queued before their batch is checked in the broker; default 15 s. */
  lostBatchAfterMs?: number;
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export interface TickResult {
  enqueued: number;
  released: number;
  expired: number;
  completed: number[];
  brokerDown: boolean;
}

export interface Dispatcher {
  /** Runs a tick soon (after a campaign is created or resumed). */
  wake(): void;
  /** One pass; exported for tests, which drive it step by step. */
  tick(): Promise<TickResult>;
  readonly brokerUp: boolean;
  close(): Promise<void>;
}

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const { store, producer, batchSize, logger } = options;
  const maxQueued = options.maxQueued ?? Math.max(batchSize * 100, 5_000);
  const lostBatchAfterMs = options.lostBatchAfterMs ?? 15_000;
  let lastLostCheck = 0;
  let brokerUp = true;

  async function enqueueBatches(): Promise<{ enqueued: number; brokerDown: boolean }> {
    let room = maxQueued - (await store.countQueued());
    let enqueued = 0;
    for (const campaign of await store.sendingCampaigns()) {
      while (room > 0) {
        const batchKey = `b-${randomUUID()}`;
        const recipientIds = await store.claimPending(campaign.id, batchKey, Math.min(batchSize, room));
        if (recipientIds.length === 0) break;
        const data: SendBatchInput = { campaignId: campaign.id, recipientIds };
        try {
          await producer.send(sendBatch, data, { idempotencyKey: batchKey, priority: campaign.priority });
        } catch (error) {
          // The broker is down: the rows go back to pending and are queued once it is back.
          await store.releaseBatch(batchKey);
          if (brokerUp)
            logger.warn({ err: (error as Error).message }, "broker unavailable; recipients stay pending");
          return { enqueued, brokerDown: true };
        }
        enqueued += recipientIds.length;
        room -= recipientIds.length;
      }
    }
    return { enqueued, brokerDown: false };
  }

  /** Rows whose batch job the broker lost, or finished without sending them, go back to pending. */
  async function releaseLostBatches(): Promise<number> {
    let released = 0;
    for (const batchKey of await store.staleQueuedBatches(lostBatchAfterMs)) {
      const job = await producer.getJob(idempotentPublicJobId(sendBatch, batchKey));
      if (!job || job.state === "completed" || job.state === "failed") {
        released += await store.releaseBatch(batchKey);
      }
    }
    if (released > 0)
      logger.info({ released }, "re-queueing recipients whose batch the broker no longer has");
    return released;
  }

  async function tick(): Promise<TickResult> {
    const expired = await store.expireLeases();
    if (expired > 0) logger.warn({ expired }, "recipients left sending past their lease are now unknown");
    await store.startDueCampaigns();
    let released = 0;
    let brokerDown = false;
    if (Date.now() - lastLostCheck >= Math.min(lostBatchAfterMs, 5_000)) {
      try {
        released = await releaseLostBatches();
        lastLostCheck = Date.now();
      } catch {
        brokerDown = true;
      }
    }
    const dispatched = brokerDown ? { enqueued: 0, brokerDown } : await enqueueBatches();
    if (!brokerUp && !dispatched.brokerDown) logger.info({}, "broker is back; dispatching");
    brokerUp = !dispatched.brokerDown;
    const completed = await store.completeFinishedCampaigns();
    for (const id of completed) logger.info({ campaign: id }, "campaign completed");
    return { enqueued: dispatched.enqueued, released, expired, completed, brokerDown: dispatched.brokerDown };
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let closed = false;
  let failures = 0;

  function schedule(delayMs: number) {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(loop, delayMs);
  }

  function loop() {
    if (running || closed) return;
    running = tick()
      .then((result) => {
        failures = 0;
        const busy = result.enqueued > 0 || result.released > 0;
        schedule(busy ? 50 : (options.idleIntervalMs ?? 500));
      })
      .catch((error: unknown) => {
        // The store is down: nothing was changed by the failed step; try again with backoff.
        failures++;
        if (failures === 1)
          logger.warn({ err: (error as Error).message }, "dispatcher tick failed; retrying");
        schedule(Math.min(250 * 2 ** failures, 5_000));
      })
      .finally(() => {
        running = undefined;
      });
  }

  schedule(0);
  return {
    wake: () => schedule(0),
    tick,
    get brokerUp() {
      return brokerUp;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
