/**
 * Sending one message through pools of SMTP connections (nodemailer's pooled transport, one
 * pool per server), at the pace the receivers allow, and saying what the answer means for the
 * recipient. It never touches the store: the caller records the outcome.
 *
 * Per message: pick a server among those in (weighted by `weight=`), wait (a short while at
 * most) for a free connection to it and for the limits that apply (its `rate=` and the
 * recipient's group, shared by every worker; its adaptive rate, this process's), then send.
 * A server that refuses the connection is left for another at once (nothing was handed over);
 * after several in a row it is out for a cool-down. A message that could not be tried is
 * `deferred`: it waits, and it has spent no attempt.
 */
import nodemailer from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import { toNodemailerMessage, type OutgoingMessage } from "./message.js";
import { createRateCounters, groupLookup, type DomainGroup, type RateCounters } from "./rate-limits.js";
import { smtpConnectionOptions, type SmtpConnectionSettings } from "./smtp-connection-options.js";
import { SendSlots } from "./send-slots.js";
import { parseSmtpServerUrl, type SmtpServerSpec } from "./smtp-server-url.js";
import type { ServerFigures, SmtpEventSink } from "./smtp-events.js";
import { DEFAULT_PACE, ServerPace, type PaceSettings } from "./throttle.js";

export type { OutgoingMessage };

/**
 * - `temporary`: the server said 4xx in a transaction for this recipient: try again later.
 * - `permanent`: the server said 5xx: trying again would get the same answer.
 * - `ambiguous`: the link failed after the message was handed over and before the server's
 *   answer: it may have been delivered, so it must not be re-sent silently.
 * - `deferred`: no transaction for this recipient began (every server out or suspended, a
 *   limit held it, the connection was refused or answered 4xx before MAIL): not an attempt.
 */
export type SendFailureKind = "temporary" | "permanent" | "ambiguous" | "deferred";

export type SendResult =
  | { ok: true; response: string; server: string }
  | {
      ok: false;
      kind: SendFailureKind;
      code: number | null;
      error: string;
      server: string;
      /** For `deferred`: when it is worth trying again. */
      retryAfterMs?: number;
    };

/** What one message may go through. */
export interface SendOptions {
  /** The names of the servers it may use (a campaign's `servers`); absent or null: any. */
  servers?: readonly string[] | null | undefined;
  /** The recipient's domain group already let it through (`admit`): its rate is not asked again. */
  admitted?: boolean | undefined;
}

export interface Transport {
  /** SMTP transactions it can have in flight at once: its connections over every server. */
  readonly capacity: number;
  /** The connections over the named servers (those of them configured here); absent or null: `capacity`. */
  capacityOf(servers?: readonly string[] | null): number;
  send(message: OutgoingMessage, options?: SendOptions): Promise<SendResult>;
  /** Whether any domain group has a rate: only then need a batch know its recipients' domains. */
  readonly limitsDomains: boolean;
  /** The rate-limited domain group of an address, by name; undefined when its group has no rate. */
  limitedGroupOf(address: string): string | undefined;
  /**
   * Waits (2 s at most, as `send` would) for the rate of the address's domain group and counts
   * the message: 0 once it may go (then `send` it with `admitted`), else how long it should
   * wait before it is tried again. Throws nothing: counters that cannot be reached hold it.
   */
  admit(address: string): Promise<number>;
  /** Checks that every server answers; throws with the first that does not. */
  verify(): Promise<void>;
  /** Each server's state and figures, as this process sees them. */
  figures(): ServerFigures[];
  /**
   * When every server (of `servers` when given) is suspended, not merely out: when the first
   * resumes, and why.
   */
  allSuspended(servers?: readonly string[] | null): { until: Date; reply: string | null } | undefined;
  close(): void;
}

export interface TransportOptions {
  /** Connections per server per process (a server's `connections=` may lower it). */
  poolSize: number;
  timeoutMs: number;
  /** Where the shared counters live; default: this process's memory. */
  counters?: RateCounters;
  groups?: readonly DomainGroup[];
  pace?: Partial<PaceSettings>;
  onEvent?: SmtpEventSink;
  /** How long a message may wait for a connection or a limit before it is deferred; default 2 s. */
  maxWaitMs?: number;
  /** TLS, EHLO name and DKIM, for every server. */
  connection?: SmtpConnectionSettings;
}

interface SmtpError extends Error {
  code?: string;
  originalCode?: string;
  command?: string;
  responseCode?: number;
  response?: string;
  syscall?: string;
  timeoutType?: string;
}

/** Failures that happen before an SMTP session exists: nothing can have been handed over. */
const NEVER_CONNECTED =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ECONNRESET|EDNS|Greeting never received/;
/** Commands before MAIL FROM: a reply to them concerns the session, not any recipient. */
const SESSION_COMMANDS = /^(EHLO|HELO|LHLO|STARTTLS|AUTH)/;

export type SmtpErrorClass =
  | { stage: "connection"; unreachable: true; code: number | null }
  | { stage: "connection"; unreachable: false; code: number }
  | { stage: "transaction"; kind: "temporary" | "permanent" | "ambiguous"; code: number | null };

/** Certificate checks that fail during the TLS handshake (Node's codes for them). */
const CERTIFICATE_FAILURE =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|DEPTH_ZERO|wrong version number|handshake/i;

/** A TLS failure (STARTTLS or implicit TLS): the session never reached MAIL FROM. */
function isTlsFailure(error: SmtpError): boolean {
  if (error.code === "ETLS" || error.command === "STARTTLS") return true;
  return error.command === "CONN" && CERTIFICATE_FAILURE.test(`${error.originalCode ?? ""} ${error.message}`);
}

/**
 * nodemailer reports a link lost at RCPT exactly as one lost after the message body (code
 * ECONNECTION, command CONN, no reply code), so a link lost mid-session counts as `ambiguous`:
 * retrying it could deliver the message twice. Only a failure known to come before any
 * session (refused, a connect or greeting timeout) or a reply to a session command is not a
 * transaction.
 */
export function classifySmtpError(error: SmtpError): SmtpErrorClass {
  const code = typeof error.responseCode === "number" ? error.responseCode : null;
  // A TLS failure (STARTTLS refused or not offered under tls=required, a certificate that does
  // not verify) is this recipient's attempt failing before MAIL FROM: nothing was handed over,
  // and it will not heal by itself, so it spends an attempt and ends failed naming TLS.
  if (isTlsFailure(error)) return { stage: "transaction", kind: "temporary", code };
  const command = error.command ?? "";
  // A reply with the connection closed is reported as CONN whatever the stage; only the greeting
  // (and the commands before MAIL) concern no recipient. A 4xx or 5xx closing a transaction is
  // a refusal: nothing was delivered.
  const session =
    SESSION_COMMANDS.test(command) || (command === "CONN" && /Invalid greeting/.test(error.message));
  if (code !== null && session) {
    return code >= 400 && code < 500
      ? { stage: "connection", unreachable: false, code }
      : { stage: "connection", unreachable: true, code };
  }
  if (code !== null && code >= 500) return { stage: "transaction", kind: "permanent", code };
  if (code !== null && code >= 400) return { stage: "transaction", kind: "temporary", code };
  if (
    error.syscall === "connect" ||
    error.timeoutType === "CONNECT_TIMEOUT" ||
    error.timeoutType === "GREETING_TIMEOUT" ||
    NEVER_CONNECTED.test(`${error.code ?? ""} ${error.originalCode ?? ""} ${error.message}`)
  ) {
    return { stage: "connection", unreachable: true, code };
  }
  return { stage: "transaction", kind: "ambiguous", code };
}

function describe(error: SmtpError): string {
  // A TLS failure's reply alone ("500 command not recognized") would not say it was STARTTLS.
  const text = error.code === "ETLS" ? `TLS: ${error.message}` : (error.response ?? error.message);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/** The domain of the address in a To: `"Name" <a@b.example>` or `a@b.example`. */
export function recipientDomain(to: string): string {
  const address = /<([^>]*)>\s*$/.exec(to)?.[1] ?? to;
  return address
    .slice(address.lastIndexOf("@") + 1)
    .trim()
    .toLowerCase();
}

function nodemailerOptions(
  spec: SmtpServerSpec,
  connections: number,
  timeoutMs: number,
  connection: SmtpConnectionSettings | undefined,
): SMTPPool.Options {
  return {
    pool: true,
    ...smtpConnectionOptions(spec, connection),
    maxConnections: connections,
    maxMessages: Infinity,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  };
}

/** How often a message waiting for a group's connection held by other workers asks again. */
const GROUP_CONNECTION_POLL_MS = 25;

/**
 * A group's `Nconn`, held by every worker together: a lease in the shared counters per
 * transaction (given back when it ends, or when its lease runs out if the worker died), and in
 * front of it a semaphore per process, so that a process asks the store only for the
 * connections it could use.
 */
class GroupConnections {
  private readonly slots = new Map<string, SendSlots>();

  constructor(
    private readonly counters: RateCounters,
    private readonly leaseMs: number,
  ) {}

  /**
   * Takes a connection of the group, waiting until `deadline` at most: what to give back (null
   * when the group has no connection limit), or undefined if none came in time. Throws when
   * the counters' store cannot be reached.
   */
  async acquire(group: DomainGroup, deadline: number): Promise<{ token: string } | null | undefined> {
    if (group.connections === undefined) return null;
    let slots = this.slots.get(group.name);
    if (!slots) this.slots.set(group.name, (slots = new SendSlots(group.connections)));
    const waitMs = Math.max(0, deadline - Date.now());
    if ((await slots.acquire(1, AbortSignal.timeout(waitMs))) !== 1) return undefined;
    try {
      for (;;) {
        const token = await this.counters.hold(`group:${group.name}`, group.connections, this.leaseMs);
        if (token !== undefined) return { token };
        if (Date.now() + GROUP_CONNECTION_POLL_MS > deadline) break;
        await new Promise((resolve) =>
          setTimeout(resolve, GROUP_CONNECTION_POLL_MS + Math.random() * GROUP_CONNECTION_POLL_MS),
        );
      }
    } catch (error) {
      slots.release(1);
      throw error;
    }
    slots.release(1);
    return undefined;
  }

  release(group: DomainGroup, held: { token: string } | null): void {
    if (!held) return;
    this.slots.get(group.name)?.release(1);
    // A lease not given back (the store is down) ends by itself.
    this.counters.giveBack(`group:${group.name}`, held.token).catch(() => undefined);
  }
}

/** How much longer than `maxWaitMs` a message may wait for its server's own limits. */
const SERVER_LIMIT_EXTRA_WAIT_MS = 8_000;
/** A deferred message waits at least this long, plus up to as much again: claims stay chunk-sized. */
const MIN_DEFER_MS = 1_000;
const deferFor = (ms: number) => Math.max(ms, MIN_DEFER_MS) + Math.floor(Math.random() * MIN_DEFER_MS);

export function createSmtpTransport(
  servers: readonly (string | SmtpServerSpec)[],
  options: TransportOptions,
): Transport {
  if (servers.length === 0) throw new Error("at least one SMTP URL is needed");
  const settings: PaceSettings = { ...DEFAULT_PACE, ...options.pace };
  const emit: SmtpEventSink = options.onEvent ?? (() => undefined);
  const counters = options.counters ?? createRateCounters({ kind: "memory" });
  // The adaptive rates are this process's own: counted here, whatever the shared store is.
  const local = createRateCounters({ kind: "memory" });
  const lookup = groupLookup(options.groups ?? []);
  // A transaction takes at most a connect, a greeting and a few replies, each within the timeout.
  const groupConnections = new GroupConnections(counters, 4 * options.timeoutMs);
  const maxWaitMs = options.maxWaitMs ?? 2_000;

  const pool = servers.map((server) => {
    const spec = typeof server === "string" ? parseSmtpServerUrl(server) : server;
    const connections = Math.min(options.poolSize, spec.connections ?? options.poolSize);
    return {
      spec,
      pace: new ServerPace(spec.name, connections, spec.rate, settings, emit),
      transport: nodemailer.createTransport(
        nodemailerOptions(spec, connections, options.timeoutMs, options.connection),
      ),
    };
  });
  type Server = (typeof pool)[number];
  const among = (servers: readonly string[] | null | undefined): Server[] =>
    servers ? pool.filter((s) => servers.includes(s.spec.name)) : pool;

  function pick(candidates: Server[]): Server {
    const free = candidates.filter((s) => s.pace.hasFreeConnection);
    const from = free.length > 0 ? free : candidates;
    let ticket = Math.random() * from.reduce((sum, s) => sum + s.spec.weight, 0);
    for (const server of from) {
      ticket -= server.spec.weight;
      if (ticket < 0) return server;
    }
    return from[from.length - 1]!;
  }

  /**
   * Waits for every limit of this message; 0 once all let it through, else the wait that would
   * pass the deadline. A server's own limits may be waited for longer than a group's: every
   * message to that server waits for them anyway, so deferring it frees nothing.
   */
  async function limits(server: Server, group: DomainGroup | undefined, deadline: number): Promise<number> {
    const serverDeadline = deadline + SERVER_LIMIT_EXTRA_WAIT_MS;
    type Gate = [RateCounters, string, number | undefined, number];
    const gates: Gate[] = [
      [local, `adaptive:${server.spec.name}`, server.pace.adaptiveRate, serverDeadline],
      [counters, `server:${server.spec.name}`, server.spec.rate, serverDeadline],
    ];
    if (group) gates.push([counters, `group:${group.name}`, group.rate, deadline]);
    for (const [store, key, rate, until] of gates) {
      if (rate === undefined) continue;
      const wait = await store.admit(key, rate, until);
      if (wait > 0) return wait;
    }
    return 0;
  }

  function deferred(
    server: string,
    error: string,
    retryAfterMs: number,
    code: number | null = null,
  ): SendResult {
    return { ok: false, kind: "deferred", code, error, server, retryAfterMs: deferFor(retryAfterMs) };
  }

  async function send(message: OutgoingMessage, options: SendOptions = {}): Promise<SendResult> {
    const allowed = among(options.servers);
    if (allowed.length === 0) {
      // Another worker may have the campaign's servers (a process configured apart): wait for it.
      return deferred(
        pool[0]!.spec.name,
        `none of the campaign's servers (${options.servers!.join(", ")}) is configured in this worker (it has ${pool.map((s) => s.spec.name).join(", ")})`,
        10_000,
      );
    }
    const group = lookup(recipientDomain(message.to.address));
    const deadline = Date.now() + maxWaitMs;
    const tried = new Set<Server>();
    let last: { server: string; error: string; code: number | null } | undefined;
    for (;;) {
      const now = Date.now();
      for (const server of allowed) server.pace.refresh(now);
      const candidates = allowed.filter((s) => s.pace.usable && !tried.has(s));
      if (candidates.length === 0) {
        const waits = allowed.filter((s) => s.pace.until).map((s) => s.pace.until!.getTime() - now);
        const retry = waits.length > 0 ? Math.min(...waits) : MIN_DEFER_MS;
        if (last)
          return deferred(
            last.server,
            `${last.error} (not tried elsewhere: no other server is in)`,
            retry,
            last.code,
          );
        const states = allowed.map((s) => `${s.spec.name} ${s.pace.state}`).join(", ");
        const none = options.servers ? "none of the campaign's SMTP servers" : "no SMTP server";
        return deferred(allowed[0]!.spec.name, `${none} is in (${states})`, retry);
      }
      const server = pick(candidates);
      const name = server.spec.name;
      let groupConnection: { token: string } | null | undefined;
      try {
        groupConnection = await groupConnections.acquire(group, deadline);
      } catch (error) {
        server.pace.held();
        return deferred(name, `rate counters unavailable: ${(error as Error).message}`, 0);
      }
      if (groupConnection === undefined) {
        server.pace.held();
        return deferred(
          name,
          `waiting for a connection to ${group.name} (its limit is ${group.connections}, across every worker)`,
          0,
        );
      }
      try {
        if (!(await server.pace.acquire(deadline, options.admitted === true))) {
          if (!server.pace.usable) {
            tried.add(server);
            continue;
          }
          server.pace.held();
          return deferred(name, "waiting for a free connection", 0);
        }
        try {
          let wait: number;
          try {
            wait = await limits(server, options.admitted ? undefined : group, deadline);
          } catch (error) {
            // The counters' store cannot be reached: never send past a limit; wait.
            server.pace.held();
            return deferred(name, `rate counters unavailable: ${(error as Error).message}`, 0);
          }
          if (wait > 0) {
            server.pace.held();
            return deferred(name, `held by a rate limit (${name} or ${group.name})`, wait);
          }
          const info = (await server.transport.sendMail(toNodemailerMessage(message))) as {
            response?: string;
          };
          server.pace.accepted();
          return { ok: true, response: info.response ?? "250", server: name };
        } catch (error) {
          const smtpError = error as SmtpError;
          const text = describe(smtpError);
          const verdict = classifySmtpError(smtpError);
          if (verdict.stage === "connection") {
            // Nothing was handed over: another server may take it now.
            if (verdict.unreachable) server.pace.unreachable(text);
            else server.pace.refusedConnection(text);
            tried.add(server);
            last = { server: name, error: text, code: verdict.code };
            continue;
          }
          if (verdict.kind === "permanent") server.pace.rejected();
          else if (verdict.kind === "temporary") server.pace.temporary(verdict.code, text);
          return { ok: false, kind: verdict.kind, code: verdict.code, error: text, server: name };
        } finally {
          server.pace.release();
        }
      } finally {
        groupConnections.release(group, groupConnection);
      }
    }
  }

  // A server whose cool-down ended is probed even when no message comes (a connection and
  // EHLO, no transaction), so it is back in, and shown so, as soon as it answers.
  const probing = new Set<Server>();
  const prober = setInterval(() => {
    const now = Date.now();
    for (const server of pool) {
      server.pace.refresh(now);
      if (server.pace.state !== "probing" || server.pace.inFlight > 0 || probing.has(server)) continue;
      probing.add(server);
      server.transport
        .verify()
        .then(
          () => server.pace.reachable(),
          (error: Error) => server.pace.unreachable(`probe: ${error.message}`),
        )
        .finally(() => probing.delete(server));
    }
  }, 1_000);
  prober.unref();

  return {
    limitsDomains: (options.groups ?? []).some((group) => group.rate !== undefined),
    limitedGroupOf(address) {
      const group = lookup(recipientDomain(address));
      return group.rate === undefined ? undefined : group.name;
    },
    async admit(address) {
      const group = lookup(recipientDomain(address));
      if (group.rate === undefined) return 0;
      try {
        const wait = await counters.admit(`group:${group.name}`, group.rate, Date.now() + maxWaitMs);
        return wait > 0 ? deferFor(wait) : 0;
      } catch {
        return deferFor(0);
      }
    },
    capacity: pool.reduce((sum, s) => sum + s.pace.maxConnections, 0),
    capacityOf: (servers) => among(servers).reduce((sum, s) => sum + s.pace.maxConnections, 0),
    send,
    async verify() {
      for (const server of pool) {
        try {
          await server.transport.verify();
        } catch (error) {
          throw new Error(`SMTP server ${server.spec.name} does not answer: ${(error as Error).message}`, {
            cause: error,
          });
        }
      }
    },
    figures() {
      const now = Date.now();
      return pool.map((s) => {
        s.pace.refresh(now);
        return s.pace.figures(now);
      });
    },
    allSuspended(servers) {
      const now = Date.now();
      const these = among(servers);
      for (const s of these) s.pace.refresh(now);
      if (these.length === 0 || !these.every((s) => s.pace.state === "suspended")) return undefined;
      const first = these.reduce((a, b) => (a.pace.until!.getTime() <= b.pace.until!.getTime() ? a : b));
      return { until: first.pace.until!, reply: first.pace.lastReply };
    },
    close() {
      clearInterval(prober);
      for (const server of pool) server.transport.close();
    },
  };
}
