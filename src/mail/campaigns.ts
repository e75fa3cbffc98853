/**
 * Creating a campaign: validate the message, stream its recipients into the store in one
 * transaction, report every rejected line (malformed or duplicate) with its place, and refuse
 * placeholders no recipient can fill. Nothing is kept if the campaign is refused.
 */
import type { CampaignRow, CampaignStatus, NewCampaign } from "../db/campaigns.js";
import type { NewRecipient, RecipientStatus } from "../db/recipients.js";
import type { ParseItem, Rejected } from "./recipients/parse.js";
import { headerProblems, parseMailbox } from "./message.js";
import { compileTemplate, unknownPlaceholders } from "./render.js";
import { parseErrorBudgetOption } from "./error-budget.js";
import type { ErrorBudget } from "./send-batch.js";

/** Bad input the user can fix; `details` says where. */
export class InvalidCampaignError extends Error {
  constructor(
    message: string,
    readonly details: unknown,
  ) {
    super(message);
    this.name = "InvalidCampaignError";
  }
}

/** What the campaign lifecycle needs from the store; the wiring adapts the database to it. */
export interface CampaignStore {
  /** Runs `work` in one transaction, with a store whose every call is part of it. */
  transaction<T>(work: (store: CampaignStore) => Promise<T>): Promise<T>;
  insertCampaign(campaign: NewCampaign): Promise<number>;
  /** Inserts recipients, dropping addresses the campaign already has (reported with the line kept). */
  insertRecipients(
    campaignId: number,
    recipients: readonly NewRecipient[],
  ): Promise<{ inserted: number; duplicates: { line: number; email: string; firstLine: number }[] }>;
  setCampaignTotal(campaignId: number, total: number): Promise<void>;
  /** Tells the database its recipients changed a lot (after a large upload), for its query plans. */
  refreshStatistics(): Promise<void>;
  getCampaign(id: number): Promise<CampaignRow | undefined>;
  /** Moves the campaign from one of `from` to `to`; false when it was in none of them. */
  transitionCampaign(
    id: number,
    from: readonly CampaignStatus[],
    to: CampaignStatus,
    reason?: string | null,
  ): Promise<boolean>;
  /** Moves the campaign's recipients in `from` to `to`; returns how many. */
  moveRecipients(campaignId: number, from: readonly RecipientStatus[], to: RecipientStatus): Promise<number>;
  /** Back to pending with a fresh attempt budget (earlier attempts stay in the log); returns how many. */
  retryRecipients(campaignId: number, from: readonly RecipientStatus[]): Promise<number>;
}

export interface CampaignInput {
  name?: unknown;
  from?: unknown;
  subject?: unknown;
  text?: unknown;
  html?: unknown;
  priority?: unknown;
  sendAt?: unknown;
  replyTo?: unknown;
  headers?: unknown;
  listUnsubscribe?: unknown;
  ignoreManualSuppressions?: unknown;
  servers?: unknown;
  errorBudget?: unknown;
}

/** Most rejected lines reported back; the count beyond is still given. */
const MAX_REPORTED_REJECTIONS = 10_000;
/** A campaign this large changes the recipients table enough to refresh the planner's statistics. */
const LARGE_CAMPAIGN = 10_000;
/** Recipients per insert statement: large enough that a million-line file is a few hundred. */
const INSERT_CHUNK = 5_000;

/** Longest values, in characters: a name fits a list view, a subject one header line (RFC 5322). */
export const CAMPAIGN_LIMITS = Object.freeze({ nameChars: 200, subjectChars: 998, fromChars: 320 });
const YEAR_MS = 365.25 * 24 * 3600_000;
/** A sendAt may lie this far back (it then sends at once) or ahead; beyond is taken as a typo. */
export const SEND_AT_RANGE = Object.freeze({ pastMs: YEAR_MS, futureMs: 10 * YEAR_MS });

// RFC 3339 date-time: a zone is required, so that "09:00" never depends on the server's clock.
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The instant of an RFC 3339 date-time, or undefined when it is not one (or not a real date). */
export function parseDateTime(value: string): Date | undefined {
  const match = DATE_TIME.exec(value);
  if (!match) return undefined;
  const field = (group: number) => Number(match[group] ?? 0);
  const [y, mo, d, h, mi, sec] = [field(1), field(2), field(3), field(4), field(5), field(6)] as const;
  const zone = (match[8] ?? "Z").toUpperCase();
  // Date.UTC(y, mo, 0) is the last day of month mo; it rolls 30 February over instead of refusing it.
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth || h > 23 || mi > 59 || sec > 59) return undefined;
  const offsetMinutes =
    zone === "Z"
      ? 0
      : (zone.startsWith("-") ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  const ms = Math.floor(Number(`0${match[7] ?? ""}`) * 1000);
  // Years before 100 would be read as 19xx; they are far outside any range a caller allows.
  return new Date(Date.UTC(y, mo - 1, d, h, mi, sec, ms) - offsetMinutes * 60_000);
}

/**
 * A campaign's `servers`: an array of names, or (a multipart field is text) the array as JSON
 * or the names separated by commas. Each must be one of `known`, the configured servers' names.
 */
function serversOf(value: unknown, known: readonly string[]): { servers: string[] } | { reason: string } {
  let names: unknown = value;
  if (typeof value === "string") {
    const text = value.trim();
    if (text.startsWith("[")) {
      try {
        names = JSON.parse(text);
      } catch {
        return {
          reason: "must be an array of server names (in a multipart form, JSON or names separated by commas)",
        };
      }
    } else names = text.split(",").map((name) => name.trim());
  }
  if (!Array.isArray(names) || !names.every((name): name is string => typeof name === "string"))
    return { reason: 'must be an array of server names, like ["relay-a"]' };
  const servers = [...new Set(names.filter((name) => name !== ""))];
  if (servers.length === 0) return { reason: "must name at least one server (leave it out to use any)" };
  const unknown = servers.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    const list = unknown.map((name) => `"${name.length > 64 ? `${name.slice(0, 64)}…` : name}"`).join(", ");
    const knownText =
      known.length > 0
        ? `the configured servers are ${known.join(", ")} (the name= of each URL in LOVAGE_SMTP_URL)`
        : "no SMTP server is configured in this process (LOVAGE_SMTP_URL)";
    return {
      reason: `${list} ${unknown.length > 1 ? "are not configured servers" : "is not a configured server"}: ${knownText}`,
    };
  }
  return { servers };
}

/**
 * `defaultFrom` is LOVAGE_DEFAULT_FROM (or the catcher's stand-in); undefined when neither is
 * there, and then a campaign must give its own `from`. `serverNames` are the configured SMTP
 * servers' names, which a campaign's `servers` must be among.
 */
export function validateCampaignInput(
  input: CampaignInput,
  defaultFrom: string | undefined,
  now = new Date(),
  serverNames: readonly string[] = [],
): NewCampaign {
  const problems: { field: string; reason: string }[] = [];
  const optionalText = (field: keyof CampaignInput, maxChars?: number): string | null => {
    const value = input[field];
    if (value === undefined || value === null || value === "") return null;
    if (typeof value !== "string") {
      problems.push({ field, reason: "must be a string" });
      return null;
    }
    if (maxChars !== undefined && value.length > maxChars) {
      problems.push({ field, reason: `must have at most ${maxChars} characters (it has ${value.length})` });
      return null;
    }
    return value;
  };
  const hasProblem = (...fields: string[]) => problems.some((p) => fields.includes(p.field));
  const subject = optionalText("subject", CAMPAIGN_LIMITS.subjectChars);
  if (subject === null && !hasProblem("subject")) problems.push({ field: "subject", reason: "is required" });
  const name = optionalText("name", CAMPAIGN_LIMITS.nameChars);
  const text = optionalText("text");
  const html = optionalText("html");
  if (text === null && html === null && !hasProblem("text", "html")) {
    problems.push({ field: "text", reason: "text or html is required" });
  }
  const from = optionalText("from", CAMPAIGN_LIMITS.fromChars) ?? defaultFrom;
  if (from === undefined) {
    if (!hasProblem("from"))
      problems.push({
        field: "from",
        reason:
          "is required: no LOVAGE_DEFAULT_FROM is set (a sender of your own domain, for SPF, DKIM and DMARC)",
      });
  } else if (!hasProblem("from")) {
    const checked = parseMailbox(from);
    if (!checked.ok)
      problems.push({ field: "from", reason: `"${from}" is not a valid sender: ${checked.reason}` });
  }
  const replyTo = optionalText("replyTo", CAMPAIGN_LIMITS.fromChars);
  if (replyTo !== null) {
    const checked = parseMailbox(replyTo);
    if (!checked.ok)
      problems.push({ field: "replyTo", reason: `"${replyTo}" is not a valid address: ${checked.reason}` });
  }
  let headers: Record<string, string> = {};
  if (input.headers !== undefined && input.headers !== null && input.headers !== "") {
    let value: unknown = input.headers;
    // A multipart field is text: the headers as a JSON object.
    if (typeof value === "string") {
      try {
        value = JSON.parse(value);
      } catch {
        value = undefined;
      }
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problems.push({
        field: "headers",
        reason: 'must be an object of header names to values, like {"List-Id": "<news.example.com>"}',
      });
    } else {
      const found = headerProblems(value as Record<string, unknown>);
      for (const reason of found) problems.push({ field: "headers", reason });
      if (found.length === 0) headers = value as Record<string, string>;
    }
  }
  const flag = (field: "listUnsubscribe" | "ignoreManualSuppressions", fallback: boolean): boolean => {
    const value = input[field];
    if (value === undefined || value === null || value === "") return fallback;
    // A multipart field is text.
    if (value === true || value === "true") return true;
    if (value === false || value === "false") return false;
    problems.push({ field, reason: "must be true or false" });
    return fallback;
  };
  const listUnsubscribe = flag("listUnsubscribe", true);
  const ignoreManualSuppressions = flag("ignoreManualSuppressions", false);
  let priority = 0;
  if (input.priority !== undefined && input.priority !== null && input.priority !== "") {
    // A multipart field is text; JSON gives a number.
    priority =
      typeof input.priority === "number"
        ? input.priority
        : typeof input.priority === "string" && /^\s*[+-]?\d{1,4}\s*$/.test(input.priority)
          ? Number(input.priority)
          : Number.NaN;
    if (!Number.isInteger(priority) || priority < -100 || priority > 100) {
      problems.push({ field: "priority", reason: "must be a whole number from -100 to 100" });
    }
  }
  let sendAt: Date | null = null;
  if (input.sendAt !== undefined && input.sendAt !== null && input.sendAt !== "") {
    sendAt = (typeof input.sendAt === "string" && parseDateTime(input.sendAt.trim())) || null;
    const earliest = new Date(now.getTime() - SEND_AT_RANGE.pastMs);
    const latest = new Date(now.getTime() + SEND_AT_RANGE.futureMs);
    if (!sendAt) {
      problems.push({
        field: "sendAt",
        reason: "must be an ISO 8601 date and time with a zone, such as 2026-12-01T09:00:00Z",
      });
    } else if (sendAt < earliest || sendAt > latest) {
      problems.push({
        field: "sendAt",
        reason: `must be from ${earliest.toISOString()} (a year ago) to ${latest.toISOString()} (10 years ahead)`,
      });
    }
  }
  let servers: string[] | null = null;
  if (input.servers !== undefined && input.servers !== null && input.servers !== "") {
    const checked = serversOf(input.servers, serverNames);
    if ("reason" in checked) problems.push({ field: "servers", reason: checked.reason });
    else servers = checked.servers;
  }
  let errorBudget: ErrorBudget | false | null = null;
  if (input.errorBudget !== undefined && input.errorBudget !== null && input.errorBudget !== "") {
    try {
      errorBudget = parseErrorBudgetOption(input.errorBudget);
    } catch (error) {
      problems.push({ field: "errorBudget", reason: (error as Error).message });
    }
  }
  if (problems.length > 0) {
    throw new InvalidCampaignError(problems.map((p) => `${p.field} ${p.reason}`).join("; "), problems);
  }
  return {
    name: name ?? subject!,
    from: from!,
    subject: subject!,
    text,
    html,
    priority,
    sendAt,
    replyTo,
    headers,
    listUnsubscribe,
    ignoreManualSuppressions,
    servers,
    errorBudget,
  };
}

/**
 * `{{unsubscribe_url}}` needs LOVAGE_PUBLIC_URL: without it the link would render empty, so the
 * campaign is refused instead.
 */
export function checkUnsubscribePlaceholder(campaign: NewCampaign, publicUrl: string | undefined): void {
  if (publicUrl !== undefined) return;
  const used = [campaign.subject, campaign.text, campaign.html]
    .filter((source): source is string => source !== null)
    .some((source) => compileTemplate(source).placeholders.includes("unsubscribe_url"));
  if (used) {
    throw new InvalidCampaignError(
      "{{unsubscribe_url}} needs LOVAGE_PUBLIC_URL (the address at which recipients reach Lovage)",
      [{ field: "text", reason: "{{unsubscribe_url}} without LOVAGE_PUBLIC_URL" }],
    );
  }
}

/**
 * The recipients as given, with a file that cannot be read at all (a CSV without an email
 * column, an unclosed quote) reported as bad input rather than as a failure of the server.
 */
async function* readable(items: Iterable<ParseItem> | AsyncIterable<ParseItem>): AsyncGenerator<ParseItem> {
  try {
    yield* items;
  } catch (error) {
    throw new InvalidCampaignError(`recipients: ${(error as Error).message}`, null);
  }
}

export interface CreatedCampaign {
  campaignId: number;
  accepted: number;
  rejected: Rejected[];
  rejectedCount: number;
}

/**
 * Writes the campaign and its recipients in one transaction. `items` may be a stream: it is
 * read in chunks and never held whole.
 */
export async function createCampaign(
  store: CampaignStore,
  campaign: NewCampaign,
  items: Iterable<ParseItem> | AsyncIterable<ParseItem>,
): Promise<CreatedCampaign> {
  const templates = [campaign.subject, campaign.text, campaign.html]
    .filter((source): source is string => source !== null)
    .map(compileTemplate);
  const created = await store.transaction(async (trx) => {
    const campaignId = await trx.insertCampaign(campaign);
    const rejected: Rejected[] = [];
    let rejectedCount = 0;
    let accepted = 0;
    const fieldNames = new Set<string>();
    let chunk: NewRecipient[] = [];
    const reject = (item: Rejected) => {
      rejectedCount++;
      if (rejected.length < MAX_REPORTED_REJECTIONS) rejected.push(item);
    };
    // One insert is in flight while the next chunk is read and checked: the database (another
    // process, or PGlite's thread) and the parser work at the same time.
    let inFlight: Promise<void> = Promise.resolve();
    const flush = async () => {
      const rows = chunk;
      chunk = [];
      await inFlight;
      const insert = trx.insertRecipients(campaignId, rows).then((result) => {
        accepted += result.inserted;
        for (const duplicate of result.duplicates) {
          reject({
            line: duplicate.line,
            value: duplicate.email,
            reason: `duplicate of line ${duplicate.firstLine}`,
          });
        }
      });
      // Awaited at the next flush; until then a failure must not be an unhandled rejection.
      insert.catch(() => undefined);
      inFlight = insert;
    };
    for await (const item of readable(items)) {
      if (!item.ok) {
        reject(item.rejected);
        continue;
      }
      for (const key of Object.keys(item.recipient.fields)) fieldNames.add(key);
      chunk.push(item.recipient);
      if (chunk.length >= INSERT_CHUNK) await flush();
    }
    await flush();
    await inFlight;
    rejected.sort((a, b) => a.line - b.line);
    if (accepted === 0) {
      throw new InvalidCampaignError("no valid recipient: every line was rejected (see details)", {
        rejected,
        rejectedCount,
      });
    }
    const unknown = unknownPlaceholders(templates, fieldNames);
    if (unknown.length > 0) {
      throw new InvalidCampaignError(
        `placeholder${unknown.length > 1 ? "s" : ""} ${unknown.map((p) => `{{${p}}}`).join(", ")} ` +
          `match no recipient field (fields: ${["email", "name", ...fieldNames].filter((f, i, a) => a.indexOf(f) === i).join(", ")})`,
        { placeholders: unknown },
      );
    }
    await trx.setCampaignTotal(campaignId, accepted);
    return { campaignId, accepted, rejected, rejectedCount };
  });
  if (created.accepted >= LARGE_CAMPAIGN) await store.refreshStatistics();
  return created;
}
