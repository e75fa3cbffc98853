/** Kysely's view of the tables in schema `lovage` (see migrations/). */
import type { ColumnType, Generated } from "kysely";

type CreatedAt = ColumnType<Date, Date | undefined, Date>;

/** What a user may do, most to least: admin (everything, users), sender (campaigns, tasks), viewer (read only). */
export const ROLES = Object.freeze(["admin", "sender", "viewer"] as const);
export type Role = (typeof ROLES)[number];

export interface SettingsTable {
  key: string;
  value: string;
}

export interface UsersTable {
  id: Generated<number>;
  username: string;
  password_hash: string;
  role: Role;
  token_generation: Generated<number>;
  created_at: CreatedAt;
}

export interface CampaignsTable {
  id: Generated<number>;
  name: string;
  from_address: string;
  subject: string;
  text_body: string | null;
  html_body: string | null;
  priority: Generated<number>;
  status: string;
  status_reason: string | null;
  send_at: Date | null;
  total: Generated<number>;
  created_at: CreatedAt;
  started_at: Date | null;
  completed_at: Date | null;
  reply_to: string | null;
  headers: ColumnType<Record<string, string>, string | undefined, string>;
  list_unsubscribe: Generated<boolean>;
  ignore_manual_suppressions: Generated<boolean>;
  budget_since: Date | null;
  auto_resume_at: Date | null;
  /** JSON text in, parsed JSON out (jsonb). */
  servers: ColumnType<string[] | null, string | null | undefined, string | null>;
  error_budget: ColumnType<
    { share: number; window: number; minimum: number } | false | null,
    string | null | undefined,
    string | null
  >;
}

export interface SuppressionsTable {
  email: string;
  reason: string;
  campaign_id: number | null;
  detail: string | null;
  created_at: CreatedAt;
}

export interface RecipientsTable {
  id: Generated<number>;
  campaign_id: number;
  line: number;
  email: string;
  address: string | null;
  soft_bounces: Generated<number>;
  fields: ColumnType<Record<string, string>, string, string>;
  status: Generated<string>;
  attempts: Generated<number>;
  batch_job_id: string | null;
  last_response: string | null;
  last_error: string | null;
  message_id: string | null;
  next_attempt_at: Date | null;
  lease_expires_at: Date | null;
  queued_at: Date | null;
  last_attempt_at: Date | null;
  sent_at: Date | null;
  retry_since: Date | null;
  attempt_base: Generated<number>;
}

export interface AttemptsTable {
  id: Generated<number>;
  recipient_id: number;
  campaign_id: number;
  attempt: number;
  outcome: string;
  smtp_code: number | null;
  response: string | null;
  error: string | null;
  worker: string | null;
  started_at: Date;
  finished_at: CreatedAt;
  /** The SMTP server's name (migration 0006). */
  server: string | null;
}

export interface CaughtMessagesTable {
  id: Generated<number>;
  received_at: Date;
  envelope_from: string;
  envelope_to: ColumnType<string[], string, string>;
  message_id: string | null;
  subject: string;
  from_header: string;
  to_header: ColumnType<string[], string, string>;
  text_body: string;
  html_body: string | null;
  headers: ColumnType<Record<string, string>, string, string>;
  size_bytes: number;
}

export interface WorkersTable {
  id: string;
  host: string;
  pid: number;
  queues: ColumnType<string[], string, string>;
  concurrency: number;
  started_at: Date;
  heartbeat_at: Date;
  processed: number;
  failed: number;
  active: number;
  watchdog_restarts: number;
  last_job_at: Date | null;
  stopped_at: Date | null;
  running: ColumnType<WorkerRunningJob[], string | undefined, string>;
  emails_sent: Generated<number>;
  shutdown_requested_at: Date | null;
}

export interface WorkerRunningJob {
  id: string;
  task: string;
  startedAt: string;
}

export interface SchedulesTable {
  id: string;
  task: string;
  queue: string;
  cron: string | null;
  /** bigint: read back as a string by node-postgres. */
  every_ms: ColumnType<string | number | null, number | null, number | null>;
  timezone: string | null;
  input: ColumnType<unknown, string, string>;
  enabled: boolean;
  source: "code" | "api";
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

/** A duration histogram: cumulative counts per bound of DURATION_BUCKETS_MS (figures.ts). */
type Histogram = ColumnType<number[], number[], number[]>;

export interface EmailFiguresPendingTable {
  id: Generated<string>;
  minute: Date;
  server: string;
  domain: string;
  outcome: string;
  worker: string;
  n: number;
  duration_ms_sum: number;
  duration_hist: Histogram;
}

export interface EmailMinutesTable {
  minute: Date;
  server: string;
  domain_group: string;
  outcome: string;
  n: number;
  duration_ms_sum: number;
  duration_hist: Histogram;
}

export interface EmailTotalsTable {
  server: string;
  outcome: string;
  /** bigint: read back as a string by node-postgres. */
  n: ColumnType<string | number, number, number>;
  duration_ms_sum: number;
  duration_hist: Histogram;
}

export interface JobMinutesTable {
  minute: Date;
  queue: string;
  task: string;
  state: string;
  n: number;
  wait_ms_sum: number;
  wait_hist: Histogram;
  run_ms_sum: number;
  run_hist: Histogram;
}

export interface JobTotalsTable {
  queue: string;
  task: string;
  state: string;
  n: ColumnType<string | number, number, number>;
  run_ms_sum: number;
  run_hist: Histogram;
}

export interface QueueMinutesTable {
  minute: Date;
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
}

export interface SmtpServersTable {
  worker_id: string;
  name: string;
  state: string;
  until: Date | null;
  sent: number;
  failed: number;
  deferred: number;
  rate: number;
  limit_rate: number | null;
  connections: number;
  reply: string | null;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export interface SmtpEventsTable {
  id: Generated<number>;
  at: CreatedAt;
  scope: string;
  name: string;
  kind: string;
  reply: string | null;
  rate: number | null;
  connections: number | null;
  until: Date | null;
  worker: string | null;
}

export interface Database {
  "lovage.settings": SettingsTable;
  "lovage.users": UsersTable;
  "lovage.campaigns": CampaignsTable;
  "lovage.recipients": RecipientsTable;
  "lovage.attempts": AttemptsTable;
  "lovage.caught_messages": CaughtMessagesTable;
  "lovage.workers": WorkersTable;
  "lovage.schedules": SchedulesTable;
  "lovage.email_figures_pending": EmailFiguresPendingTable;
  "lovage.email_minutes": EmailMinutesTable;
  "lovage.email_totals": EmailTotalsTable;
  "lovage.job_minutes": JobMinutesTable;
  "lovage.job_totals": JobTotalsTable;
  "lovage.queue_minutes": QueueMinutesTable;
  "lovage.suppressions": SuppressionsTable;
  "lovage.smtp_servers": SmtpServersTable;
  "lovage.smtp_events": SmtpEventsTable;
}
