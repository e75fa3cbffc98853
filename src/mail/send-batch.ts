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
import type { AttemptRecord, AttemptWindow, Outcome, RecipientRow } from "../db/recipients.js";
import { declareTask, implementTask, type TaskDefinition } from "../queue/task.js";
import { buildMessage, compileMessage, type CompiledMessage, type MessageSettings } from "./message.js";
import { coalesce } from "./coalesce.js";
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
  /** The addresses of the ids still `queued`. */
  queuedEmails(recipientIds: readonly number[]): Promise<{ id: number; email: string }[]>;
  /** Puts ids still `queued` back to `pending` until `retryAt`, spending no attempt. */
  postpone(recipientIds: readonly number[], retryAt: Date): Promise<number>;
  /** The campaign's last `size` attempts since its error budget's window began (its last resume). */
  recentAttempts(campaignId: number, size: number): Promise<AttemptWindow>;
  /** Pauses a sending campaign with a reason, resuming by itself at `resumeAt` when given; false if it was not sending. */
  pauseCampaign(campaignId: number, reason: string, resumeAt: Date | null): Promise<boolean>;
}

/**
 * A campaign pauses itself when more than `share` of its last `window` attempts failed with a
 * 5xx, once it has made at least `minimum` (since its last resume).
 */
export interface ErrorBudget {
  share: number;
  window: number;
  minimum: number;
}

export const DEFAULT_ERROR_BUDGET: ErrorBudget = { share: 0.1, window: 200, minimum: 50 };

export interface SendBatchDeps {
  store: SendStore;
  transport: Transport;
  /** The worker's identity, as `GET /api/workers` shows it; kept with every attempt. */
  workerId: string;
  /** A cap on SMTP transactions per recipient besides the age; undefined: the age alone decides. */
  maxAttempts?: number | undefined;
  retryBaseMs: number;
  /** A recipient that keeps getting 4xx (or cannot be tried) is failed once its first try is this old. */
  retryMaxAgeMs: number;
  errorBudget?: ErrorBudget | undefined;
  leaseMs: number;
  /** What every message shares (the token keys, the unsubscribe and bounce addresses). */
  message: MessageSettings;
  logger: { warn(obj: object, msg: string): void };
}

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

/** Retries are spaced at most this far apart, however many came before. */
export const MAX_RETRY_DELAY_MS = 3600_000;

/** Exponential backoff with jitter on the upper half, capped at an hour: base·2^(n-1)·[0.5, 1). */
export function retryDelayMs(attempt: number, baseMs: number, random = Math.random): number {
  const ceiling = Math.min(baseMs * 2 ** Math.max(0, attempt - 1), MAX_RETRY_DELAY_MS);
  return Math.round(ceiling * (0.5 + random() / 2));
}

function hours(ms: number): string {
  return ms >= 3600_000 ? `${Math.round((ms / 3600_000) * 10) / 10} h` : `${Math.round(ms / 60_000)} min`;
}

/**
 * What a send result means for the recipient. A temporary failure is retried on a schedule
 * until the recipient's first try (since its last retry by a user) is `retryMaxAgeMs` old, as
 * mail servers keep a message in their queue; a deferred one (not tried) waits without
 * spending an attempt, within the same age.
 */
export function outcomeOf(
  result: SendResult,
  recipient: Pick<RecipientRow, "attempts" | "attemptBase" | "retrySince">,
  deps: Pick<SendBatchDeps, "maxAttempts" | "retryBaseMs" | "retryMaxAgeMs">,
  messageId: string,
  now = Date.now(),
): Outcome {
  if (result.ok) return { kind: "sent", messageId, response: result.response };
  const error = `${result.server}: ${result.error}`;
  const age = now - (recipient.retrySince?.getTime() ?? now);
  const inBudget = recipient.attempts - recipient.attemptBase;
  switch (result.kind) {
    case "permanent":
      return { kind: "failed", code: result.code, error };
    case "ambiguous":
      return { kind: "unknown", code: result.code, error: `${error} (the message may have been delivered)` };
    case "deferred": {
      const retryAfter = result.retryAfterMs ?? 1_000;
      if (age + retryAfter > deps.retryMaxAgeMs) {
        return {
          kind: "failed",
          code: result.code,
          error: `${error} (not sent within ${hours(deps.retryMaxAgeMs)}, LOVAGE_RETRY_MAX_AGE)`,
        };
      }
      return { kind: "deferred", error, retryAt: new Date(now + retryAfter) };
    }
    case "temporary": {
      if (deps.maxAttempts !== undefined && inBudget >= deps.maxAttempts) {
        return { kind: "failed", code: result.code, error: `${error} (gave up after ${inBudget} attempts)` };
      }
      const delay = retryDelayMs(inBudget, deps.retryBaseMs);
      if (age + delay > deps.retryMaxAgeMs) {
        return {
          kind: "failed",
          code: result.code,
          error: `${error} (gave up after ${inBudget} attempts over ${hours(age)}, LOVAGE_RETRY_MAX_AGE)`,
        };
      }
      return { kind: "retry", code: result.code, error, retryAt: new Date(now + delay) };
    }
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
  /** A campaign as sending needs it: its message, the servers it must use, its error budget. */
  interface CampaignEntry {
    message: CompiledMessage;
    servers: readonly string[] | null;
    errorBudget: ErrorBudget | undefined;
  }
  const compiled = new Map<number, CampaignEntry>();
  // Two bounds, shared by every batch this process runs: transactions in flight (the pool's
  // connections, so a claimed row never waits for one), and rows claimed but not yet recorded
  // (so after a crash at most that many can be `unknown`, each of them with a transaction
  // that had started).
  const inFlight = new SendSlots(deps.transport.capacity);
  const unrecorded = new SendSlots(unrecordedLimit(deps.transport.capacity));
  // Every batch of the process claims and records through one statement at a time each, so
  // connections freed one by one still make claims and writes of many rows.
  const claimRows = coalesce((ids: number[]) => deps.store.claimForSending(ids, deps.leaseMs));
  const recordRows = coalesce((records: AttemptRecord[]) =>
    deps.store.recordOutcomes(records, deps.workerId),
  );

  async function campaignFor(id: number): Promise<CampaignEntry | undefined> {
    const cached = compiled.get(id);
    if (cached) return cached;
    const campaign = await deps.store.getCampaign(id);
    if (!campaign) return undefined;
    const entry: CampaignEntry = {
      message: compileMessage(campaign),
      servers: campaign.servers ?? null,
      // A campaign's own thresholds (false: none) replace the deployment's.
      errorBudget:
        campaign.errorBudget === undefined || campaign.errorBudget === null
          ? deps.errorBudget
          : campaign.errorBudget || undefined,
    };
    // Templates never change after creation; a bounded cache keeps a long-running worker small.
    if (compiled.size > 1000) compiled.clear();
    compiled.set(id, entry);
    return entry;
  }

  async function sendOne(
    entry: CampaignEntry,
    recipient: RecipientRow,
    admitted: boolean,
  ): Promise<AttemptRecord> {
    const startedAt = new Date();
    const message = buildMessage(entry.message, recipient, deps.message);
    const sendResult = await deps.transport.send(message, { servers: entry.servers, admitted });
    return {
      recipientId: recipient.id,
      campaignId: recipient.campaignId,
      attempt: recipient.attempts,
      startedAt,
      server: sendResult.server,
      outcome: outcomeOf(sendResult, recipient, deps, message.messageId),
    };
  }

  async function record(records: AttemptRecord[], signal: AbortSignal) {
    if (records.length === 0) return;
    const deadline = Math.min(...records.map((r) => r.startedAt.getTime())) + deps.leaseMs;
    let delayMs = 200;
    for (;;) {
      try {
        await recordRows(records);
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

  /**
   * The error budget (after a chunk with a 5xx), and every server suspended: either pauses the
   * campaign with a reason that names the figure and the reply.
   */
  async function pausedItself(
    campaignId: number,
    entry: CampaignEntry,
    records: readonly AttemptRecord[],
  ): Promise<boolean> {
    const suspended = deps.transport.allSuspended(entry.servers);
    if (suspended) {
      const which = entry.servers ? `of the campaign (${entry.servers.join(", ")}) ` : "";
      const reason = `every SMTP server ${which}is suspended until ${suspended.until.toISOString()} (${suspended.reply ?? "no reply"}); resumes by itself then`;
      if (await deps.store.pauseCampaign(campaignId, reason, suspended.until))
        deps.logger.warn(
          { campaign: campaignId, until: suspended.until },
          "campaign paused: every server suspended",
        );
      return true;
    }
    const budget = entry.errorBudget;
    if (!budget || !records.some((r) => r.outcome.kind === "failed" && (r.outcome.code ?? 0) >= 500))
      return false;
    const window = await deps.store.recentAttempts(campaignId, budget.window);
    if (window.total < budget.minimum || window.permanent <= budget.share * window.total) return false;
    const percent = Math.round((window.permanent / window.total) * 1000) / 10;
    const top = window.topReply ? `; most often (${window.topReply.count}×): ${window.topReply.text}` : "";
    const reason = `error budget: ${window.permanent} of the last ${window.total} attempts failed permanently (${percent}%, more than ${budget.share * 100}%)${top}`;
    if (await deps.store.pauseCampaign(campaignId, reason, null))
      deps.logger.warn({ campaign: campaignId, reason }, "campaign paused by its error budget");
    return true;
  }

  return implementTask(sendBatch, async ({ campaignId, recipientIds }, context) => {
    const result: SendBatchResult = { sent: 0, retried: 0, failed: 0, unknown: 0, skipped: 0 };
    const entry = await campaignFor(campaignId);
    if (!entry) return { ...result, skipped: recipientIds.length };
    let stop = false;
    let failure: { error: unknown } | undefined;
    // A campaign held to some servers has no more in flight at a time than their connections:
    // the rest would only wait for one and be deferred.
    const own = entry.servers
      ? new SendSlots(Math.max(1, deps.transport.capacityOf(entry.servers)))
      : undefined;
    const freeConnections = (n: number) => {
      inFlight.release(n);
      own?.release(n);
    };

    /**
     * Takes up to `want` rows' worth of every bound, or 0 once the batch stops or is aborted.
     * `first`: ahead of every waiter, for a message its domain's limit has let through, which
     * must leave within its window.
     */
    async function takeSlots(want: number, first: boolean): Promise<number> {
      const { signal } = context;
      const mine = own ? await own.acquire(want, signal, first) : want;
      const held = mine > 0 && !stop ? await unrecorded.acquire(mine, signal, first) : 0;
      const taken = held > 0 && !stop ? await inFlight.acquire(held, signal, first) : 0;
      own?.release(mine - taken);
      unrecorded.release(held - taken);
      return taken;
    }

    /**
     * Sends a claimed chunk, then records it; its slots are given back as each part ends. It
     * never rejects: the batch's first failure is kept and thrown once every chunk has ended.
     */
    const sendAndRecord = async (
      claimed: RecipientRow[],
      taken: number,
      admitted: boolean,
    ): Promise<void> => {
      try {
        const records = await Promise.all(
          claimed.map((recipient) => sendOne(entry, recipient, admitted).finally(() => freeConnections(1))),
        );
        await record(records, context.signal);
        for (const { outcome } of records) {
          if (outcome.kind === "sent") result.sent++;
          else if (outcome.kind === "retry" || outcome.kind === "deferred") result.retried++;
          else if (outcome.kind === "failed") result.failed++;
          else result.unknown++;
        }
        // A campaign that pauses itself stops here: the rest of the batch is not queued any more.
        if (await pausedItself(campaignId, entry, records)) stop = true;
      } catch (error) {
        stop = true;
        failure ??= { error };
      } finally {
        unrecorded.release(taken);
      }
    };

    const chunks: Promise<void>[] = [];

    /**
     * Claims and sends `ids` a chunk at a time, as soon as connections are free, while earlier
     * chunks still send; returns once the last chunk is claimed (or the batch stops).
     */
    async function sendAll(ids: readonly number[], admitted: boolean): Promise<void> {
      let next = 0;
      while (next < ids.length && !stop) {
        const taken = await takeSlots(ids.length - next, admitted);
        if (taken === 0) break;
        const chunk = ids.slice(next, next + taken);
        next += chunk.length;
        let claimed: RecipientRow[];
        try {
          // Mark sending before DATA: a crash after this must not resend.
          const ours = new Set(chunk);
          claimed = (await claimRows(chunk)).filter((row) => ours.has(row.id));
        } catch (error) {
          freeConnections(taken);
          unrecorded.release(taken);
          stop = true;
          failure ??= { error };
          break;
        }
        result.skipped += chunk.length - claimed.length;
        freeConnections(chunk.length - claimed.length);
        chunks.push(sendAndRecord(claimed, taken, admitted));
      }
    }

    /**
     * Recipients of a rate-limited domain group, one at a time: each waits for its group's rate
     * before it is claimed or takes a connection, so it holds up no recipient of another
     * domain. Once one is not let through in time, it and the rest of the lane go back to
     * pending until the group has room, spending no attempt.
     */
    async function sendLimited(items: readonly { id: number; email: string }[]): Promise<void> {
      for (const [index, item] of items.entries()) {
        if (stop) return;
        const wait = await deps.transport.admit(item.email);
        if (wait > 0) {
          const rest = items.slice(index).map((later) => later.id);
          result.retried += await deps.store.postpone(rest, new Date(Date.now() + wait));
          return;
        }
        await sendAll([item.id], true);
      }
    }

    const lanes: Promise<void>[] = [];
    if (deps.transport.limitsDomains) {
      const limited = new Map<string, { id: number; email: string }[]>();
      const free: number[] = [];
      const queued = await deps.store.queuedEmails(recipientIds);
      for (const row of queued) {
        const group = deps.transport.limitedGroupOf(row.email);
        if (group === undefined) free.push(row.id);
        else if (limited.has(group)) limited.get(group)!.push(row);
        else limited.set(group, [row]);
      }
      result.skipped += recipientIds.length - queued.length;
      lanes.push(sendAll(free, false), ...[...limited.values()].map(sendLimited));
    } else {
      lanes.push(sendAll(recipientIds, false));
    }
    try {
      await Promise.all(lanes);
    } catch (error) {
      stop = true;
      failure ??= { error };
    }
    await Promise.all(chunks);
    if (failure) throw failure.error;
    return result;
  });
}
