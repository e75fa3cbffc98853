/**
 * What a user may do to a running campaign, and what it does to its recipients:
 *   pause   sending | scheduled → paused; queued recipients go back to pending (batches in
 *           flight find them not queued and skip them)
 *   resume  paused → sending; only recipients not yet sent are sent
 *   cancel  any open status → cancelled; pending and queued recipients become skipped
 *   retry   failed (or unknown, when asked) recipients → pending with a fresh attempt budget
 *           (their earlier attempts stay in the log); a completed campaign sends again
 * A campaign may also pause itself (the error budget, every server suspended: send-batch), with
 * a statusReason; resume works the same on it.
 * Each is one transaction. It never talks HTTP: the route maps the answer to a status code.
 */
import type { CampaignStatus } from "../db/campaigns.js";
import type { CampaignStore } from "./campaigns.js";

export type LifecycleAnswer =
  | { ok: true }
  | { ok: false; problem: "not_found"; message: string }
  | { ok: false; problem: "conflict"; message: string };

const OPEN: readonly CampaignStatus[] = ["draft", "scheduled", "sending", "paused"];

async function act(
  store: CampaignStore,
  id: number,
  conflict: string,
  change: (trx: CampaignStore, status: CampaignStatus) => Promise<boolean>,
): Promise<LifecycleAnswer> {
  return store.transaction(async (trx) => {
    const current = await trx.getCampaign(id);
    if (!current) return { ok: false, problem: "not_found", message: `campaign ${id} not found` };
    if (!(await change(trx, current.status)))
      return { ok: false, problem: "conflict", message: `${conflict} (campaign ${id} is ${current.status})` };
    return { ok: true };
  });
}

export function pauseCampaign(store: CampaignStore, id: number): Promise<LifecycleAnswer> {
  return act(store, id, "only a sending or scheduled campaign can be paused", async (trx) => {
    if (!(await trx.transitionCampaign(id, ["sending", "scheduled"], "paused", "paused by a user")))
      return false;
    await trx.moveRecipients(id, ["queued"], "pending");
    return true;
  });
}

export function resumeCampaign(store: CampaignStore, id: number): Promise<LifecycleAnswer> {
  return act(store, id, "only a paused campaign can be resumed", (trx) =>
    trx.transitionCampaign(id, ["paused"], "sending"),
  );
}

export function cancelCampaign(store: CampaignStore, id: number): Promise<LifecycleAnswer> {
  return act(store, id, "the campaign is already finished", async (trx) => {
    if (!(await trx.transitionCampaign(id, OPEN, "cancelled", "cancelled by a user"))) return false;
    await trx.moveRecipients(id, ["pending", "queued"], "skipped");
    return true;
  });
}

/** Sends again to the recipients in `statuses` (failed by default; unknown ones may then get it twice). */
export function retryCampaign(
  store: CampaignStore,
  id: number,
  statuses: readonly ("failed" | "unknown")[] = ["failed"],
): Promise<LifecycleAnswer> {
  return act(store, id, "a cancelled campaign cannot be retried", async (trx, status) => {
    if (status === "cancelled") return false;
    const moved = await trx.retryRecipients(id, statuses);
    if (moved > 0) await trx.transitionCampaign(id, ["completed", "sending"], "sending");
    return true;
  });
}
