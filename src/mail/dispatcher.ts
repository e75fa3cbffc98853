/**
 * The dispatcher turns pending recipients into send-batch jobs, and keeps the store and the
 * broker in step: it gives back rows whose batch the broker no longer has (Redis restarted
 * empty), turns rows whose lease ran out into `unknown`, starts scheduled campaigns and
 * completes finished ones. It runs in every API process; the store's row locks keep several
 * dispatchers from queueing one recipient twice. It never sends mail.
 */
import { randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { completeFinishedCampaigns, sendingCampaigns, startDueCampaigns } from "../db/campaigns.js";
import {
  claimPendingForBatch,
  countQueued,
  expireLeases,
  releaseBatch,
  staleQueuedBatches,
} from "../db/recipients.js";
import type { Database } from "../db/schema.js";
import type { Broker } from "../queue/connection.js";
import { toBullPriority } from "../queue/task.js";
import { EMAIL_QUEUE, SEND_BATCH_TASK, type SendBatchInput } from "./send-batch.js";

export interface DispatcherOptions {
  db: Kysely<Database>;
  broker: Broker;
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
  const { db, broker, batchSize, logger } = options;
  const maxQueued = options.maxQueued ?? Math.max(batchSize * 100, 5_000);
  const lostBatchAfterMs = options.lostBatchAfterMs ?? 15_000;
  let lastLostCheck = 0;
  let brokerUp = true;

  async function enqueueBatches(): Promise<{ enqueued: number; brokerDown: boolean }> {
    let room = maxQueued - (await countQueued(db));
    let enqueued = 0;
    for (const campaign of await sendingCampaigns(db)) {
      while (room > 0) {
        const batchJobId = `b-${randomUUID()}`;
        const recipientIds = await claimPendingForBatch(
          db,
          campaign.id,
          batchJobId,
          Math.min(batchSize, room),
        );
        if (recipientIds.length === 0) break;
        const data: SendBatchInput = { campaignId: campaign.id, recipientIds };
        try {
          await broker.queue(EMAIL_QUEUE).add(SEND_BATCH_TASK, data, {
            jobId: batchJobId,
            priority: toBullPriority(campaign.priority),
            attempts: 8,
            backoff: { type: "exponential", delay: 1_000, jitter: 0.5 },
            removeOnComplete: { age: 3600, count: 10_000 },
            removeOnFail: { age: 24 * 3600 },
          });
        } catch (error) {
          // The broker is down: the rows go back to pending and are queued once it is back.
          await releaseBatch(db, batchJobId);
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
    const queue = broker.queue(EMAIL_QUEUE);
    for (const batchJobId of await staleQueuedBatches(db, lostBatchAfterMs)) {
      const state = await queue.getJobState(batchJobId);
      if (state === "unknown" || state === "completed" || state === "failed") {
        released += await releaseBatch(db, batchJobId);
      }
    }
    if (released > 0)
      logger.info({ released }, "re-queueing recipients whose batch the broker no longer has");
    return released;
  }

  async function tick(): Promise<TickResult> {
    const expired = await expireLeases(db);
    if (expired > 0) logger.warn({ expired }, "recipients left sending past their lease are now unknown");
    await startDueCampaigns(db);
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
    const completed = await completeFinishedCampaigns(db);
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
