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
  "suppressed",
  "bounced",
  "complained",
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
  /** When it starts sending; null: at once. */
  sendAt: string | null;
  /** The SMTP servers it must use; null: any. */
  servers?: string[] | null;
  /** Its own error budget, false for none; null: the server's LOVAGE_ERROR_BUDGET. */
  errorBudget?: { share: number; window: number; minimum: number } | false | null;
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
  } else if (body instanceof Blob) {
    headers["content-type"] = body.type;
    payload = body;
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

/** Signs out on the server too, which revokes every token of this user, then forgets it here. */
export async function logout(): Promise<void> {
  try {
    if (getToken()) await send("POST", "/api/auth/logout");
  } catch {
    // A token already refused or a server out of reach: forgetting it here is all that is left.
  }
  clearToken();
  unauthorizedHandler();
}

export const ROLES = Object.freeze(["admin", "sender", "viewer"] as const);
export type Role = (typeof ROLES)[number];

export interface User {
  id: number;
  username: string;
  role: Role;
  createdAt: string;
}

export async function getMe(): Promise<Omit<User, "createdAt">> {
  return json("GET", "/api/auth/me");
}

export async function listUsers(): Promise<User[]> {
  return (await json<{ users: User[] }>("GET", "/api/users")).users;
}

export async function createUser(user: { username: string; password: string; role: Role }): Promise<User> {
  return json("POST", "/api/users", user);
}

export async function updateUser(id: number, change: { role?: Role; password?: string }): Promise<User> {
  return json("PATCH", `/api/users/${id}`, change);
}

export async function deleteUser(id: number): Promise<void> {
  await send("DELETE", `/api/users/${id}`);
}

export interface CampaignFields {
  name?: string;
  /** Unset: the server's default sender. */
  from?: string;
  subject: string;
  /** At least one of text and html. */
  text?: string;
  html?: string;
  replyTo?: string;
  /** Unset: true (List-Unsubscribe when the server has a public URL). */
  listUnsubscribe?: boolean;
  /** Server names separated by commas; unset: any server. */
  servers?: string;
  /** `5%/100/20` or `off`; unset: the server's LOVAGE_ERROR_BUDGET. */
  errorBudget?: string;
}

export interface MessagePreview {
  headers: { name: string; value: string }[];
  subject: string;
  text: string | null;
  html: string | null;
  raw: string;
}

export type TestSendAnswer =
  | { ok: true; response: string; server: string; messageId: string }
  | { ok: false; kind: string; code: number | null; error: string; server: string; messageId: string };

function withoutEmpty(fields: CampaignFields): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== ""));
}

/** The campaign's message rendered for one recipient (`Name <address>`), nothing sent. */
export async function previewCampaign(fields: CampaignFields, to: string): Promise<MessagePreview> {
  return json("POST", "/api/campaigns/preview", { ...withoutEmpty(fields), to });
}

/** Sends the rendered message once to `to` through the server's SMTP transport. */
export async function testSendCampaign(fields: CampaignFields, to: string): Promise<TestSendAnswer> {
  return json("POST", "/api/campaigns/test-send", { ...withoutEmpty(fields), to });
}

export type RecipientSource = { kind: "pasted"; text: string } | { kind: "file"; file: File };

export async function createCampaign(
  fields: CampaignFields,
  recipients: RecipientSource,
): Promise<CreateCampaignResult> {
  const clean = withoutEmpty(fields);
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

export interface TaskDetail extends TaskInfo {
  queue: string;
  input: unknown;
  error: string | null;
  stack: string | null;
  attemptsMade: number;
  maxAttempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  worker: string | null;
  scheduleId: string | null;
  attempts?: { attempt: number; worker: string; startedAt: string; finishedAt: string; error: string }[];
  stacktrace?: string[];
}

export interface TaskQuery {
  state?: string;
  name?: string;
  queue?: string;
  q?: string;
  cursor?: string | null;
  limit?: number;
}

export async function listTasks(
  query: TaskQuery,
): Promise<{ tasks: TaskDetail[]; nextCursor: string | null }> {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return json("GET", `/api/tasks${qs ? `?${qs}` : ""}`);
}

export async function getTaskDetail(id: string): Promise<TaskDetail> {
  return json("GET", `/api/tasks/${encodeURIComponent(id)}`);
}

export async function taskAction(id: string, action: "retry" | "cancel"): Promise<TaskDetail> {
  return json("POST", `/api/tasks/${encodeURIComponent(id)}/${action}`);
}

export async function sendTask(
  name: string,
  input: unknown,
  options: Record<string, unknown>,
): Promise<{ id: string }> {
  return json("POST", `/api/tasks/${encodeURIComponent(name)}`, { input, options });
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  startedAt: string;
  heartbeatAt: string;
  processed: number;
  failed: number;
  active: number;
  running: { id: string; task: string; startedAt: string }[];
  emailsSent: number;
  watchdogRestarts: number;
  lastJobAt: string | null;
  shutdownRequestedAt: string | null;
}

export async function listWorkers(): Promise<WorkerInfo[]> {
  return (await json<{ workers: WorkerInfo[] }>("GET", "/api/workers")).workers;
}

export async function shutdownWorker(id: string): Promise<WorkerInfo> {
  return json("POST", `/api/workers/${encodeURIComponent(id)}/shutdown`);
}

export interface QueueInfo {
  name: string;
  paused: boolean;
  counts: { waiting: number; active: number; delayed: number; completed: number; failed: number };
}

export async function listQueues(): Promise<QueueInfo[]> {
  return (await json<{ queues: QueueInfo[] }>("GET", "/api/queues")).queues;
}

export async function queueAction(name: string, action: "pause" | "resume"): Promise<QueueInfo> {
  return json("POST", `/api/queues/${encodeURIComponent(name)}/${action}`);
}

export async function retryFailedJobs(name: string): Promise<{ retried: number; queue: QueueInfo }> {
  return json("POST", `/api/queues/${encodeURIComponent(name)}/retry-failed`);
}

export async function cleanQueue(
  name: string,
  state: "completed" | "failed",
  olderThanMs: number,
): Promise<{ removed: number; queue: QueueInfo }> {
  return json("POST", `/api/queues/${encodeURIComponent(name)}/clean`, { state, olderThanMs });
}

export interface ScheduleInfo {
  id: string;
  task: string;
  queue: string;
  cron: string | null;
  everyMs: number | null;
  timezone: string | null;
  input: unknown;
  enabled: boolean;
  source: "code" | "api";
  nextRunAt: string | null;
  lastRun: { jobId: string; outcome: string; error: string | null; finishedAt: string } | null;
}

export async function listSchedules(): Promise<ScheduleInfo[]> {
  return (await json<{ schedules: ScheduleInfo[] }>("GET", "/api/schedules")).schedules;
}

export async function createSchedule(body: {
  id?: string;
  task: string;
  cron?: string;
  everyMs?: number;
  timezone?: string;
  input?: unknown;
}): Promise<ScheduleInfo> {
  return json("POST", "/api/schedules", body);
}

export async function scheduleAction(id: string, action: "enable" | "disable" | "run"): Promise<unknown> {
  return json("POST", `/api/schedules/${encodeURIComponent(id)}/${action}`);
}

export async function deleteSchedule(id: string): Promise<void> {
  await send("DELETE", `/api/schedules/${encodeURIComponent(id)}`);
}

export type FigureRange = "hour" | "day";

export interface Figures {
  range: FigureRange;
  stepMinutes: number;
  since: string;
  until: string;
  emails: { at: string; sent: number; failed: number; deferred: number; unknown: number }[];
  jobs: {
    at: string;
    completed: number;
    failed: number;
    retried: number;
    cancelled: number;
    runP50Ms: number | null;
    runP95Ms: number | null;
    waitP50Ms: number | null;
    waitP95Ms: number | null;
  }[];
  queues: { at: string; queue: string; waiting: number; active: number; delayed: number; failed: number }[];
  byServer: EmailBreakdown[];
  byDomainGroup: EmailBreakdown[];
  byTask: {
    queue: string;
    task: string;
    completed: number;
    failed: number;
    retried: number;
    cancelled: number;
    runP50Ms: number | null;
    runP95Ms: number | null;
    waitP50Ms: number | null;
    waitP95Ms: number | null;
  }[];
}

export interface EmailBreakdown {
  key: string;
  sent: number;
  failed: number;
  deferred: number;
  unknown: number;
  smtpP50Ms: number | null;
  smtpP95Ms: number | null;
}

export async function getFigures(range: FigureRange): Promise<Figures> {
  return json("GET", `/api/figures?range=${range}`);
}

export interface LiveHandlers {
  campaign?: (campaign: Campaign) => void;
  workers?: (workers: WorkerInfo[]) => void;
  queue?: (queue: QueueInfo) => void;
}

/** The one stream all views share: a browser allows few connections per server. */
let stream: { source: EventSource; handlers: Set<LiveHandlers> } | null = null;

function dispatch<T>(event: string, pick: (data: unknown) => T, call: (h: LiveHandlers, value: T) => void) {
  stream?.source.addEventListener(event, (e) => {
    let value: T;
    try {
      value = pick(JSON.parse((e as MessageEvent<string>).data));
    } catch {
      // A malformed event is dropped: the views' polls bring the same state anyway.
      return;
    }
    for (const handlers of stream?.handlers ?? []) call(handlers, value);
  });
}

/**
 * Listens to /api/events for the events a view wants (`campaign`, `workers`, `queue`), over
 * one EventSource shared by every view. EventSource cannot send headers, so the token goes in
 * the query string. Returns the function that stops listening (the last one closes the stream).
 */
export function subscribeEvents(handlers: LiveHandlers): () => void {
  const token = getToken();
  if (!token || typeof EventSource === "undefined") return () => {};
  if (!stream) {
    stream = {
      source: new EventSource(`/api/events?token=${encodeURIComponent(token)}`),
      handlers: new Set(),
    };
    dispatch(
      "campaign",
      (d) => d as Campaign,
      (h, v) => h.campaign?.(v),
    );
    dispatch(
      "workers",
      (d) => (d as { workers: WorkerInfo[] }).workers,
      (h, v) => h.workers?.(v),
    );
    dispatch(
      "queue",
      (d) => d as QueueInfo,
      (h, v) => h.queue?.(v),
    );
  }
  const current = stream;
  current.handlers.add(handlers);
  return () => {
    current.handlers.delete(handlers);
    if (current.handlers.size === 0 && stream === current) {
      current.source.close();
      stream = null;
    }
  };
}

/**
 * Listens to `event: campaign` on /api/events. EventSource cannot send headers, so the
 * token goes in the query string. Returns the function that closes the stream.
 */
export function subscribeCampaigns(onCampaign: (campaign: Campaign) => void): () => void {
  return subscribeEvents({ campaign: onCampaign });
}

export type SuppressionReason = "unsubscribed" | "bounced" | "complained" | "manual";

export interface Suppression {
  email: string;
  reason: SuppressionReason;
  campaignId: number | null;
  detail: string | null;
  createdAt: string;
}

export interface SuppressionPage {
  suppressions: Suppression[];
  nextCursor: string | null;
  counts: Record<SuppressionReason, number>;
}

export async function listSuppressions(query: { q?: string; cursor?: string }): Promise<SuppressionPage> {
  const params = new URLSearchParams();
  if (query.q) params.set("q", query.q);
  if (query.cursor) params.set("cursor", query.cursor);
  const qs = params.toString();
  return json("GET", `/api/suppressions${qs ? `?${qs}` : ""}`);
}

/** Adds addresses (one per line, or a CSV with an email column) as `manual` entries. */
export async function importSuppressions(
  text: string,
): Promise<{ accepted: number; written: number; rejected: Rejected[] }> {
  const res = await send("POST", "/api/suppressions", new Blob([text], { type: "text/csv" }));
  return (await res.json()) as { accepted: number; written: number; rejected: Rejected[] };
}

export async function removeSuppression(email: string): Promise<void> {
  await send("DELETE", `/api/suppressions/${encodeURIComponent(email)}`);
}

export async function downloadSuppressionsCsv(): Promise<void> {
  const res = await send("GET", "/api/suppressions.csv");
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = "suppressions.csv";
  a.click();
  URL.revokeObjectURL(url);
}
