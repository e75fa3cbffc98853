/**
 * The send-batch task: a batch is a list of recipient ids of one campaign. It takes them a
 * chunk at a time, as many as the process has free SMTP slots: claims the chunk (queued →
 * sending) in one statement, renders and hands the chunk's messages to the pool in parallel,
 * and records the chunk's outcomes and attempts in one statement. A recipient that is not
 * `queued` any more is skipped, so a batch that runs twice sends nothing twice.
 *
 * It must never mark a recipient it could not record: when the store is down it keeps trying
 * to write the outcomes, and if it cannot before the lease ends the rows become `unknown`.
 */
import type { CampaignRow } from "../db/campaigns.js";
import type { AttemptRecord, Outcome, RecipientRow } from "../db/recipients.js";
import { declareTask, implementTask, type TaskDefinition } from "../queue/task.js";
import { buildMessage, compileMessage, type CompiledMessage, type MessageSettings } from "./message.js";
import { SendSlots } from "./send-slots.js";
import type { SendResult, Transport } from "./transport-pool.js";

export const EMAIL_QUEUE = "email";
export const SEND_BATCH_TASK = "lovage.send-batch";

export interface SendBatchInput {
  campaignId: number;
  recipientIds: number[];
}

export interface SendBatchResult {
  sent: number;
  retried: number;
  failed: number;
  unknown: number;
  skipped: number;
}

/** What sending needs from the store; the wiring adapts the database to it. */
export interface SendStore {
  getCampaign(id: number): Promise<CampaignRow | undefined>;
  /** Moves the ids still `queued` (of a sending campaign) to `sending`; returns those rows. */
  claimForSending(recipientIds: readonly number[], leaseMs: number): Promise<RecipientRow[]>;
  recordOutcomes(records: readonly AttemptRecord[], worker: string): Promise<void>;
}

export interface SendBatchDeps {
  store: SendStore;
  transport: Transport;
  /** The worker's identity, as `GET /api/workers` shows it; kept with every attempt. */
  workerId: string;
  maxAttempts: number;
  retryBaseMs: number;
  leaseMs: number;
  /** What every message shares (the token keys, the unsubscribe and bounce addresses). */
  message: MessageSettings;
  logger: { warn(obj: object, msg: string): void };
}

type CompiledCampaign = CompiledMessage;

export const sendBatchInput = {
  parse(input: unknown): SendBatchInput {
    const value = input as Partial<SendBatchInput> | null;
    if (
      !value ||
      !Number.isInteger(value.campaignId) ||
      !Array.isArray(value.recipientIds) ||
      !value.recipientIds.every((id) => Number.isInteger(id))
    ) {
      throw new Error("send-batch input must be {campaignId: integer, recipientIds: integer[]}");
    }
    return { campaignId: value.campaignId!, recipientIds: value.recipientIds };
  },
};

/** Exponential backoff with full jitter on the upper half: base·2^(n-1)·[0.5, 1). */
export function retryDelayMs(attempt: number, baseMs: number, random = Math.random): number {
  const ceiling = baseMs * 2 ** Math.max(0, attempt - 1);
  return Math.round(ceiling * (0.5 + random() / 2));
}

export function outcomeOf(
  result: SendResult,
  attempt: number,
  deps: Pick<SendBatchDeps, "maxAttempts" | "retryBaseMs">,
  messageId: string,
): Outcome {
  if (result.ok) return { kind: "sent", messageId, response: result.response };
  const error = `${result.server}: ${result.error}`;
  switch (result.kind) {
    case "permanent":
      return { kind: "failed", code: result.code, error };
    case "ambiguous":
      return { kind: "unknown", code: result.code, error: `${error} (the message may have been delivered)` };
    case "temporary":
      if (attempt >= deps.maxAttempts) {
        return { kind: "failed", code: result.code, error: `${error} (gave up after ${attempt} attempts)` };
      }
      return {
        kind: "retry",
        code: result.code,
        error,
        retryAt: new Date(Date.now() + retryDelayMs(attempt, deps.retryBaseMs)),
      };
  }
}

/**
 * The send-batch task as the dispatcher sends it. Batches are retried by BullMQ only when the
 * store could not be reached (a recipient's own retries go through the store).
 */
export const sendBatch = declareTask<SendBatchInput, SendBatchResult>(SEND_BATCH_TASK, {
  queue: EMAIL_QUEUE,
  input: sendBatchInput,
  defaults: { attempts: 8, backoffMs: 1_000 },
});

/**
 * The most recipients one worker process may hold `sending` at once: the transactions in flight
 * plus as many again whose outcomes are being written. It is also the most a `kill -9` of the
 * process can leave `unknown`.
 */
export function unrecordedLimit(capacity: number): number {
  return 2 * capacity;
}

export function createSendBatchTask(deps: SendBatchDeps): TaskDefinition<SendBatchInput, SendBatchResult> {
  const compiled = new Map<number, CompiledCampaign>();
  // Two bounds, shared by every batch this process runs: transactions in flight (the pool's
  // connections, so a claimed row never waits for one), and rows claimed but not yet recorded
  // (so after a crash at most that many can be `unknown`, each of them with a transaction
  // that had started).
  const inFlight = new SendSlots(deps.transport.capacity);
  const unrecorded = new SendSlots(unrecordedLimit(deps.transport.capacity));

  async function campaignFor(id: number): Promise<CompiledCampaign | undefined> {
    const cached = compiled.get(id);
    if (cached) return cached;
    const campaign = await deps.store.getCampaign(id);
    if (!campaign) return undefined;
    const entry = compileMessage(campaign);
    // Templates never change after creation; a bounded cache keeps a long-running worker small.
    if (compiled.size > 1000) compiled.clear();
    compiled.set(id, entry);
    return entry;
  }

  async function sendOne(entry: CompiledCampaign, recipient: RecipientRow): Promise<AttemptRecord> {
    const startedAt = new Date();
    const message = buildMessage(entry, recipient, deps.message);
    const sendResult = await deps.transport.send(message);
    return {
      recipientId: recipient.id,
      campaignId: recipient.campaignId,
      attempt: recipient.attempts,
      startedAt,
      outcome: outcomeOf(sendResult, recipient.attempts, deps, message.messageId),
    };
  }

  async function record(records: AttemptRecord[], signal: AbortSignal) {
    if (records.length === 0) return;
    const deadline = Math.min(...records.map((r) => r.startedAt.getTime())) + deps.leaseMs;
    let delayMs = 200;
    for (;;) {
      try {
        await deps.store.recordOutcomes(records, deps.workerId);
        return;
      } catch (error) {
        // The store is down: the outcomes live only here until they are written. Keep trying
        // until the lease ends; after that the rows are `unknown` and the job reports it.
        if (Date.now() + delayMs > deadline || signal.aborted) {
          throw new Error(`could not record the outcomes of ${records.length} recipients`, { cause: error });
        }
        deps.logger.warn(
          { recipients: records.length, err: (error as Error).message },
          "store unavailable; retrying the write",
        );
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  return implementTask(sendBatch, async ({ campaignId, recipientIds }, context) => {
    const result: SendBatchResult = { sent: 0, retried: 0, failed: 0, unknown: 0, skipped: 0 };
    const entry = await campaignFor(campaignId);
    if (!entry) return { ...result, skipped: recipientIds.length };
    let next = 0;
    while (next < recipientIds.length) {
      const held = await unrecorded.acquire(recipientIds.length - next, context.signal);
      if (held === 0) break;
      const taken = await inFlight.acquire(held, context.signal);
      unrecorded.release(held - taken);
      if (taken === 0) break;
      let records: AttemptRecord[];
      try {
        const chunk = recipientIds.slice(next, next + taken);
        next += chunk.length;
        // Mark sending before DATA: a crash after this must not resend.
        const claimed = await deps.store.claimForSending(chunk, deps.leaseMs);
        result.skipped += chunk.length - claimed.length;
        records = await Promise.all(claimed.map((recipient) => sendOne(entry, recipient)));
      } catch (error) {
        unrecorded.release(taken);
        throw error;
      } finally {
        // The connections are free as soon as the transactions end; the next chunk (of this
        // batch or another) sends while this one's outcomes are written.
        inFlight.release(taken);
      }
      try {
        await record(records, context.signal);
      } finally {
        unrecorded.release(taken);
      }
      for (const { outcome } of records) {
        if (outcome.kind === "sent") result.sent++;
        else if (outcome.kind === "retry") result.retried++;
        else if (outcome.kind === "failed") result.failed++;
        else result.unknown++;
      }
    }
    return result;
  });
}
