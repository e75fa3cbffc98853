// The dashboard's one door to the Lovage HTTP API (docs/api.md): it owns the token in
// localStorage, every fetch, the live-event stream, and turning error bodies into ApiError.
// It never touches the DOM beyond what a download needs; views never call fetch themselves.

const TOKEN_KEY = "lovage.token";

export const CAMPAIGN_STATUSES = Object.freeze([
  "draft",
  "scheduled",
  "sending",
  "paused",
  "completed",
  "cancelled",
] as const);
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[number];

export const RECIPIENT_STATUSES = Object.freeze([
  "pending",
  "queued",
  "sending",
  "sent",
  "failed",
  "skipped",
  "unknown",
] as const);
export type RecipientStatus = (typeof RECIPIENT_STATUSES)[number];

export interface Campaign {
  id: number;
  name: string;
  from: string;
  subject: string;
  text: string | null;
  html: string | null;
  priority: number;
  status: CampaignStatus;
  statusReason: string | null;
  createdAt: string;
  completedAt: string | null;
  total: number;
  counts: Record<RecipientStatus, number>;
  ratePerMinute: number;
  etaSeconds: number | null;
  /** Only in GET /api/campaigns/:id: the pace events while it was sending. */
  smtpEvents?: SmtpEvent[];
}

/** A server taken out or back, a rate lowered or raised, a suspension (docs/pace.md). */
export interface SmtpEvent {
  at: string;
  name: string;
  kind: string;
  reply: string | null;
  rate: number | null;
  connections: number | null;
  until: string | null;
}

export interface Rejected {
  line: number;
  value: string;
  reason: string;
}

export interface CreateCampaignResult {
  campaign: Campaign;
  accepted: number;
  /** The first rejected lines, by line number; the server may cut a long list short. */
  rejected: Rejected[];
  /** Every rejected line, including those not listed in `rejected`. */
  rejectedCount?: number;
}

export interface RejectedReport {
  rejected: Rejected[];
  rejectedCount: number;
}

export interface Recipient {
  id: number | string;
  email: string;
  fields: Record<string, unknown> | null;
  status: RecipientStatus;
  attempts: number;
  lastResponse: string | null;
  lastError: string | null;
  messageId: string | null;
  queuedAt: string | null;
  lastAttemptAt: string | null;
  sentAt: string | null;
}

/** One SMTP server as the live workers see it (GET /api/smtp). */
export interface SmtpServer {
  name: string;
  state: string;
  until: string | null;
  sent: number;
  failed: number;
  deferred: number;
  rate: number;
  connections: number;
}

export async function getSmtpServers(): Promise<SmtpServer[]> {
  return (await json<{ servers: SmtpServer[] }>("GET", "/api/smtp")).servers;
}

export interface Attempt {
  attempt: number;
  outcome: string;
  smtpCode: number | null;
  response: string | null;
  error: string | null;
  worker: string | null;
  startedAt: string;
  finishedAt: string;
}

/** One recipient with every SMTP transaction tried for it. */
export async function getRecipientAttempts(
  campaignId: number,
  recipientId: number | string,
): Promise<Attempt[]> {
  return (
    await json<{ attemptsLog: Attempt[] }>("GET", `/api/campaigns/${campaignId}/recipients/${recipientId}`)
  ).attemptsLog;
}

export interface RecipientPage {
  recipients: Recipient[];
  nextCursor: string | null;
}

export interface CaughtMessageSummary {
  id: string | number;
  receivedAt: string;
  from: string;
  to: string[];
  subject: string;
}

export interface CaughtMessage extends CaughtMessageSummary {
  text: string | null;
  html: string | null;
  headers: unknown;
}

export interface MessageList {
  messages: CaughtMessageSummary[];
  enabled: boolean;
}

export const TASK_STATES = Object.freeze([
  "waiting",
  "delayed",
  "active",
  "completed",
  "failed",
  "cancelled",
] as const);
export type TaskState = (typeof TASK_STATES)[number];

export interface TaskInfo {
  id: string;
  name: string;
  state: TaskState;
  result: unknown;
  error: unknown;
}

/** An error answer from the API, or a failure to reach it (status 0). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly details: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function clearToken(): void {
  localStorage.removeItem(TOKEN_KEY);
}

let unauthorizedHandler: () => void = () => {};

/** Called whenever a request answers 401: the token is gone, the app shows the login view. */
export function onUnauthorized(handler: () => void): void {
  unauthorizedHandler = handler;
}

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: BodyInit | undefined;
  if (body instanceof FormData) {
    payload = body; // the browser sets the multipart boundary itself
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (cause) {
    throw new ApiError(`Cannot reach the Lovage server (${String(cause)})`, 0, "network", null);
  }
  if (res.ok) return res;
  const error = await errorFrom(res);
  if (res.status === 401 && path !== "/api/auth/login") {
    clearToken();
    unauthorizedHandler();
  }
  throw error;
}

async function errorFrom(res: Response): Promise<ApiError> {
  const fallback = `${res.status} ${res.statusText || "error"}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string; details?: unknown } };
    const e = body.error;
    return new ApiError(e?.message ?? fallback, res.status, e?.code ?? "http_error", e?.details ?? null);
  } catch {
    return new ApiError(fallback, res.status, "http_error", null);
  }
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await send(method, path, body);
  return (await res.json()) as T;
}

export async function login(username: string, password: string): Promise<void> {
  const { token } = await json<{ token: string }>("POST", "/api/auth/login", { username, password });
  localStorage.setItem(TOKEN_KEY, token);
}

export function logout(): void {
  clearToken();
  unauthorizedHandler();
}

export interface CampaignFields {
  name?: string;
  /** Unset: the server's default sender. */
  from?: string;
  subject: string;
  /** At least one of text and html. */
  text?: string;
  html?: string;
}

export type RecipientSource = { kind: "pasted"; text: string } | { kind: "file"; file: File };

export async function createCampaign(
  fields: CampaignFields,
  recipients: RecipientSource,
): Promise<CreateCampaignResult> {
  const clean = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== ""));
  if (recipients.kind === "pasted") {
    return json("POST", "/api/campaigns", { ...clean, recipients: recipients.text });
  }
  // Text fields before the file: a streaming multipart parser sees them before the upload.
  const form = new FormData();
  for (const [key, value] of Object.entries(clean)) form.append(key, String(value));
  form.append("file", recipients.file, recipients.file.name);
  return json("POST", "/api/campaigns", form);
}

/**
 * The rejected lines carried by a "no valid recipient" 400: `details` is
 * `{rejected, rejectedCount}` (or, tolerated, the bare list).
 */
export function rejectedOf(error: unknown): RejectedReport {
  if (!(error instanceof ApiError)) return { rejected: [], rejectedCount: 0 };
  const d = error.details as { rejected?: unknown; rejectedCount?: unknown } | unknown[] | null;
  const list: unknown[] = Array.isArray(d) ? d : Array.isArray(d?.rejected) ? d.rejected : [];
  const rejected = list.filter(
    (r): r is Rejected => typeof r === "object" && r !== null && "line" in r && "reason" in r,
  );
  const count = !Array.isArray(d) && typeof d?.rejectedCount === "number" ? d.rejectedCount : rejected.length;
  return { rejected, rejectedCount: count };
}

export async function listCampaigns(): Promise<Campaign[]> {
  return (await json<{ campaigns: Campaign[] }>("GET", "/api/campaigns")).campaigns;
}

export async function getCampaign(id: number): Promise<Campaign> {
  return json("GET", `/api/campaigns/${id}`);
}

export type CampaignAction = "pause" | "resume" | "cancel";

export async function campaignAction(id: number, action: CampaignAction): Promise<Campaign> {
  return json("POST", `/api/campaigns/${id}/${action}`);
}

export async function retryCampaign(id: number, statuses: RecipientStatus[]): Promise<Campaign> {
  return json("POST", `/api/campaigns/${id}/retry`, { statuses });
}

export interface RecipientQuery {
  status?: RecipientStatus | "";
  q?: string;
  cursor?: string | null;
  limit?: number;
}

export async function listRecipients(id: number, query: RecipientQuery): Promise<RecipientPage> {
  const params = new URLSearchParams();
  if (query.status) params.set("status", query.status);
  if (query.q) params.set("q", query.q);
  if (query.cursor) params.set("cursor", query.cursor);
  if (query.limit) params.set("limit", String(query.limit));
  const qs = params.toString();
  return json("GET", `/api/campaigns/${id}/recipients${qs ? `?${qs}` : ""}`);
}

/** Downloads the email log as CSV: fetched with the token, saved through a Blob URL. */
export async function downloadRecipientsCsv(id: number): Promise<void> {
  const res = await send("GET", `/api/campaigns/${id}/recipients.csv`);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `campaign-${id}-recipients.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  // Revoke later: some browsers start reading the Blob only after click() returns.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function listMessages(limit = 100): Promise<MessageList> {
  return json("GET", `/api/messages?limit=${limit}`);
}

export async function getMessage(id: string): Promise<CaughtMessage> {
  return json("GET", `/api/messages/${encodeURIComponent(id)}`);
}

/**
 * A message's HTML as a page of its own, for a sandboxed iframe: the server gives it a policy
 * under which the email's styles apply (a `srcdoc` would inherit the dashboard's, which refuses
 * inline styles). An iframe cannot send headers, so the token goes in the query string.
 */
export function messageHtmlUrl(id: string | number): string {
  const token = encodeURIComponent(getToken() ?? "");
  return `/api/messages/${encodeURIComponent(id)}/html?token=${token}`;
}

export async function callTask(name: string, input: unknown): Promise<{ id: string }> {
  return json("POST", `/api/tasks/${encodeURIComponent(name)}`, { input });
}

export async function getTask(id: string): Promise<TaskInfo> {
  return json("GET", `/api/tasks/${encodeURIComponent(id)}`);
}

/**
 * Listens to `event: campaign` on /api/events. EventSource cannot send headers, so the
 * token goes in the query string. Returns the function that closes the stream.
 */
export function subscribeCampaigns(onCampaign: (campaign: Campaign) => void): () => void {
  const token = getToken();
  if (!token || typeof EventSource === "undefined") return () => {};
  const source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
  source.addEventListener("campaign", (event) => {
    try {
      onCampaign(JSON.parse((event as MessageEvent<string>).data) as Campaign);
    } catch {
      // A malformed event is dropped: the 3-second poll brings the same state anyway.
    }
  });
  return () => source.close();
}
