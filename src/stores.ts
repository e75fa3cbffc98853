/**
 * The store ports that mail/ declares (SendStore, DispatchStore, CampaignStore), adapted to
 * the database: the wiring hands these to the parts, so that mail/ reads no SQL and the db/
 * functions know nothing of mail/ (as listmonk's cmd/manager_store.go adapts its database to
 * the manager's Store).
 */
import type { Kysely } from "kysely";
import * as campaigns from "./db/campaigns.js";
import * as figures from "./db/figures.js";
import * as recipients from "./db/recipients.js";
import { inTransaction } from "./db/transaction.js";
import type { Db } from "./db/recipients.js";
import type { Database } from "./db/schema.js";
import type { CampaignStore } from "./mail/campaigns.js";
import type { DispatchStore } from "./mail/dispatcher.js";
import type { SendStore } from "./mail/send-batch.js";
import { domainGroup } from "./monitor/domain-groups.js";
import type { FiguresStore } from "./monitor/figures.js";
import type { FeedbackStore } from "./mail/bounces.js";
import * as feedback from "./db/feedback.js";
import * as suppressions from "./db/suppressions.js";

export function createSendStore(db: Db): SendStore {
  return {
    getCampaign: (id) => campaigns.getCampaign(db, id),
    claimForSending: (ids, leaseMs) => recipients.claimForSending(db, ids, leaseMs),
    recordOutcomes: (records, worker) => recipients.recordOutcomes(db, records, worker),
    queuedEmails: (ids) => recipients.queuedEmails(db, ids),
    postpone: (ids, retryAt) => recipients.postponeQueued(db, ids, retryAt),
    recentAttempts: async (campaignId, size) =>
      recipients.recentAttemptWindow(db, campaignId, size, await campaigns.budgetSince(db, campaignId)),
    pauseCampaign: (campaignId, reason, resumeAt) =>
      campaigns.pauseCampaignFor(db, campaignId, reason, resumeAt),
  };
}

export function createDispatchStore(db: Db): DispatchStore {
  return {
    expireLeases: () => recipients.expireLeases(db),
    startDueCampaigns: async () => [
      ...(await campaigns.startDueCampaigns(db)),
      ...(await campaigns.resumeDueCampaigns(db)),
    ],
    sendingCampaigns: () => campaigns.sendingCampaigns(db),
    countQueued: () => recipients.countQueued(db),
    claimPending: (campaignId, batchKey, limit) =>
      recipients.claimPendingForBatch(db, campaignId, batchKey, limit),
    releaseBatch: (batchKey) => recipients.releaseBatch(db, batchKey),
    staleQueuedBatches: (olderThanMs) => recipients.staleQueuedBatches(db, olderThanMs),
    completeFinishedCampaigns: () => campaigns.completeFinishedCampaigns(db),
  };
}

export function createCampaignStore(db: Kysely<Database>): CampaignStore {
  return campaignStoreOn(db, (work) => inTransaction(db, (trx) => work(campaignStoreOn(trx))));
}

function campaignStoreOn(db: Db, transaction?: CampaignStore["transaction"]): CampaignStore {
  const store: CampaignStore = {
    // Inside a transaction, a nested one is the same transaction.
    transaction: transaction ?? ((work) => work(store)),
    insertCampaign: (campaign) => campaigns.insertCampaign(db, campaign),
    insertRecipients: (campaignId, rows) => recipients.insertRecipients(db, campaignId, rows),
    setCampaignTotal: (id, total) => campaigns.setCampaignTotal(db, id, total),
    refreshStatistics: () => recipients.analyzeRecipients(db),
    getCampaign: (id) => campaigns.getCampaign(db, id),
    transitionCampaign: (id, from, to, reason) => campaigns.transitionCampaign(db, id, from, to, reason),
    moveRecipients: (id, from, to) => recipients.moveRecipients(db, id, from, to),
    retryRecipients: (id, from) => recipients.retryRecipients(db, id, from),
  };
  return store;
}

export function createFiguresStore(db: Kysely<Database>): FiguresStore {
  return {
    rollUpEmails: () => figures.rollUpEmails(db, domainGroup),
    recordQueueDepth: (at, depths) => figures.recordQueueDepth(db, at, depths),
    prune: (retentionMs) => figures.pruneFigures(db, retentionMs),
  };
}

export function createFeedbackStore(db: Db): FeedbackStore {
  return {
    findTarget: (by) => feedback.findFeedbackTarget(db, by),
    record: (target, report, softLimit) => feedback.recordFeedback(db, target, report, softLimit),
    suppress: async (email, reason, detail) => {
      await suppressions.addSuppressions(db, [{ email, reason, detail }]);
    },
    unsubscribe: (recipientId) =>
      suppressions.suppressRecipient(db, recipientId, "unsubscribed", "mailto: request"),
  };
}
