/**
 * One SMTP server's pace as this process sees it: whether it is in, out for a cool-down,
 * probing, or suspended; how many transactions may be in flight to it; and the adaptive rate
 * the receiver's throttling replies set (additive increase, multiplicative decrease).
 *
 * All of it is per process: each worker learns from the replies it gets, as each TCP sender
 * does. What must hold across workers (the configured rates) is in rate-limits.ts. It does no
 * I/O; the transport asks it and tells it what happened.
 */
import type { ServerFigures, ServerState, SmtpEvent, SmtpEventSink } from "./smtp-events.js";

export interface PaceSettings {
  /** Refusals or timeouts in a row that take a server out. */
  failuresToOut: number;
  /** First cool-down; doubles on each failed probe up to `maxCoolDownMs`. */
  coolDownMs: number;
  maxCoolDownMs: number;
  /** A reply matching it suspends the server. */
  suspendPattern: RegExp;
  suspendMs: number;
  /** A throttling reply: lowers the rate. */
  throttlePattern: RegExp;
  /** Quiet time after a throttle before the rate climbs again. */
  quietMs: number;
}

export const DEFAULT_SUSPEND_PATTERN = /^421[ -]4\.7\.28\b/;
/**
 * Texts receivers use to say "slower" (SES, Gmail, Microsoft, Postfix's anvil). A 421 or 454
 * always means it; a 450, 451 or 452 only with such a text, since those codes also say "this
 * mailbox is busy or full" or "greylisted" (often as a bare 4.7.1), which concern one recipient.
 */
export const THROTTLE_PATTERN = /\b4\.7\.28\b|throttl|rate limit|too many|too much mail|slow down/i;
const ALWAYS_THROTTLE = new Set([421, 454]);
const THROTTLE_WITH_TEXT = new Set([450, 451, 452]);

export const DEFAULT_PACE: PaceSettings = {
  failuresToOut: 3,
  coolDownMs: 5_000,
  maxCoolDownMs: 30_000,
  suspendPattern: DEFAULT_SUSPEND_PATTERN,
  suspendMs: 10 * 60_000,
  throttlePattern: THROTTLE_PATTERN,
  quietMs: 3_000,
};

/** Whether a 4xx reply asks the sender to slow down (rather than, say, a greylisting or a full mailbox). */
export function isThrottle(code: number | null, reply: string, settings = DEFAULT_PACE): boolean {
  if (code === null) return false;
  return ALWAYS_THROTTLE.has(code) || (THROTTLE_WITH_TEXT.has(code) && settings.throttlePattern.test(reply));
}

const MIN_RATE = 0.5;
const FIRST_DECREASE_FROM = 10;
/** How often the rate may be lowered again: the replies in flight all answer the same burst. */
const DECREASE_EVERY_MS = 1_000;
const INCREASE_EVERY_MS = 1_000;
/** A connection added back every so often after a resume or a refusal of connections. */
const CONNECTION_RAMP_MS = 10_000;

export class ServerPace {
  state: ServerState = "in";
  until: Date | null = null;
  sent = 0;
  failed = 0;
  deferred = 0;
  lastReply: string | null = null;
  /** Transactions in flight from this process. */
  inFlight = 0;
  /** Transactions allowed in flight now (≤ maxConnections). */
  connections: number;
  /** The adaptive rate, messages per second for this process; undefined: none in force. */
  adaptiveRate: number | undefined;

  private slowStart: boolean;
  private failuresInRow = 0;
  private coolDownMs: number;
  private lastDecreaseAt = 0;
  private lastIncreaseAt = 0;
  private lastThrottleAt = 0;
  private lastConnectionChangeAt = 0;
  private lastFasterEventAt = 0;
  /** Accepted messages per second over the last ten seconds, as a ring of per-second counts. */
  private readonly perSecond = new Array<number>(10).fill(0);
  private currentSecond = 0;
  private readonly waiting: (() => void)[] = [];
  /** Messages waiting with `first`: the others let them have the next free connection. */
  private firstWaiting = 0;

  constructor(
    readonly name: string,
    readonly maxConnections: number,
    /** The configured `rate=`, shared by every worker (enforced in rate-limits.ts). */
    readonly configuredRate: number | undefined,
    private readonly settings: PaceSettings,
    private readonly emit: SmtpEventSink,
  ) {
    // Slow start: one connection, one more per accepted message up to the most. Opening many at
    // once would hold the messages counted meanwhile until they connect, and they would then
    // reach the server together, above its rate.
    this.connections = 1;
    this.slowStart = maxConnections > 1;
    this.coolDownMs = settings.coolDownMs;
  }

  /** Moves out → probing and suspended → in when their time has come; ramps connections and rate. */
  refresh(now = Date.now()): void {
    if ((this.state === "out" || this.state === "suspended") && this.until && now >= this.until.getTime()) {
      if (this.state === "suspended") {
        this.state = "in";
        this.connections = 1;
        this.lastConnectionChangeAt = now;
        this.event("resumed", null, now);
      } else {
        this.state = "probing";
      }
      this.until = null;
    }
    if (!this.slowStart && this.state === "in" && this.connections < this.maxConnections) {
      if (now - this.lastConnectionChangeAt >= CONNECTION_RAMP_MS) {
        this.connections++;
        this.lastConnectionChangeAt = now;
        this.event("connections", null, now);
        this.wakeWaiters();
      }
    }
    if (this.adaptiveRate !== undefined && now - this.lastThrottleAt >= this.settings.quietMs) {
      if (now - this.lastIncreaseAt >= INCREASE_EVERY_MS) {
        this.lastIncreaseAt = now;
        const ceiling = this.configuredRate ?? Infinity;
        const observed = this.observedRate(now);
        // Additive increase: a step of a twentieth of the rate, at least one message per second.
        this.adaptiveRate = this.adaptiveRate + Math.max(1, this.adaptiveRate / 20);
        // Once the limit is well above what is being sent, or above the configured one, it is no
        // longer what holds the pace: drop it.
        const done = this.adaptiveRate >= ceiling || (observed > 0 && this.adaptiveRate > 4 * observed + 10);
        if (done) this.adaptiveRate = undefined;
        if (done || now - this.lastFasterEventAt >= 5_000) {
          this.lastFasterEventAt = now;
          this.event("faster", null, now);
        }
      }
    }
  }

  /** Whether a message may be tried on this server now (connections aside). */
  get usable(): boolean {
    return this.state === "in" || this.state === "probing";
  }

  /** Transactions allowed in flight now: one while probing. */
  get allowed(): number {
    return this.state === "probing" ? 1 : this.connections;
  }

  get hasFreeConnection(): boolean {
    return this.inFlight < this.allowed;
  }

  /**
   * Waits (at most until `deadline`) for a free connection; false if none came in time. A
   * message its domain's limit has let through goes `first`: it must leave within its window,
   * so the others wait while it does.
   */
  async acquire(deadline: number, first = false): Promise<boolean> {
    if (first) this.firstWaiting++;
    try {
      while (!this.hasFreeConnection || (!first && this.firstWaiting > 0)) {
        const left = deadline - Date.now();
        if (left <= 0 || !this.usable) return false;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, Math.min(left, 250));
          function done() {
            clearTimeout(timer);
            resolve();
          }
          this.waiting.push(done);
        });
      }
    } finally {
      if (first) this.firstWaiting--;
    }
    this.inFlight++;
    if (first && this.firstWaiting === 0) this.wakeWaiters();
    return true;
  }

  release(): void {
    this.inFlight--;
    this.wakeWaiters();
  }

  private wakeWaiters() {
    for (const wake of this.waiting.splice(0)) wake();
  }

  accepted(now = Date.now()): void {
    this.sent++;
    this.countSecond(now);
    this.reachable(now);
    if (this.slowStart && this.state === "in") {
      this.connections = Math.min(this.maxConnections, this.connections + 1);
      if (this.connections === this.maxConnections) this.slowStart = false;
      this.lastConnectionChangeAt = now;
      this.wakeWaiters();
    }
  }

  /** A connection worked (a message, or a probe with no message): a probing server is back in. */
  reachable(now = Date.now()): void {
    this.failuresInRow = 0;
    if (this.state === "probing") {
      this.state = "in";
      this.coolDownMs = this.settings.coolDownMs;
      this.event("in", null, now);
      this.wakeWaiters();
    }
  }

  /** A 5xx: the server is fine, the recipient is not. */
  rejected(): void {
    this.failed++;
    this.failuresInRow = 0;
  }

  /** A 4xx in a transaction; lowers the rate or suspends when the reply says so. */
  temporary(code: number | null, reply: string, now = Date.now()): void {
    this.deferred++;
    this.failuresInRow = 0;
    if (this.settings.suspendPattern.test(reply)) return this.suspend(reply, now);
    if (!isThrottle(code, reply, this.settings)) return;
    this.lastThrottleAt = now;
    if (now - this.lastDecreaseAt < DECREASE_EVERY_MS) return;
    this.lastDecreaseAt = now;
    this.lastIncreaseAt = now;
    // Multiplicative decrease, from what was being sent when no limit was in force yet (at
    // least FIRST_DECREASE_FROM: a throttle among the first replies says little about the rate,
    // and further throttles halve it again each second).
    const from = this.adaptiveRate ?? Math.max(this.recentRate(now), FIRST_DECREASE_FROM);
    this.adaptiveRate = Math.max(MIN_RATE, Math.min(from, this.configuredRate ?? Infinity) / 2);
    this.lastReply = reply;
    this.event("slower", reply, now);
  }

  /** A refusal at connection time (a 421 greeting, "too many connections"): fewer connections. */
  refusedConnection(reply: string, now = Date.now()): void {
    this.deferred++;
    if (this.settings.suspendPattern.test(reply)) return this.suspend(reply, now);
    this.lastReply = reply;
    this.slowStart = false;
    // The connections that work now are the most the server takes; keep one fewer than tried.
    const next = Math.max(1, Math.min(this.connections, this.inFlight) - 1);
    this.lastConnectionChangeAt = now;
    if (next < this.connections) {
      this.connections = next;
      this.event("connections", reply, now);
    }
  }

  /** Connection refused, or a timeout before the greeting: nothing was handed over. */
  unreachable(reply: string, now = Date.now()): void {
    this.deferred++;
    this.failuresInRow++;
    this.lastReply = reply;
    if (
      this.state === "probing" ||
      (this.state === "in" && this.failuresInRow >= this.settings.failuresToOut)
    ) {
      if (this.state === "probing")
        this.coolDownMs = Math.min(this.coolDownMs * 2, this.settings.maxCoolDownMs);
      this.state = "out";
      this.until = new Date(now + this.coolDownMs);
      this.event("out", reply, now);
      this.wakeWaiters();
    }
  }

  /** Not tried here: a limit or all servers out held the message. */
  held(): void {
    this.deferred++;
  }

  private suspend(reply: string, now: number): void {
    this.lastReply = reply;
    if (this.state === "suspended") return;
    this.slowStart = false;
    this.state = "suspended";
    this.until = new Date(now + this.settings.suspendMs);
    this.event("suspended", reply, now);
    this.wakeWaiters();
  }

  observedRate(now = Date.now()): number {
    this.countSecond(now, 0);
    const seconds = this.perSecond.length;
    return this.perSecond.reduce((a, b) => a + b, 0) / seconds;
  }

  /** Accepted per second over the last one to two seconds: what was being sent just now. */
  recentRate(now = Date.now()): number {
    this.countSecond(now, 0);
    const second = Math.floor(now / 1000);
    const n = this.perSecond[second % 10]! + this.perSecond[(second + 9) % 10]!;
    return n / (1 + (now % 1000) / 1000);
  }

  private countSecond(now: number, n = 1): void {
    const second = Math.floor(now / 1000);
    const gap = second - this.currentSecond;
    if (gap > 0) {
      for (let i = 1; i <= Math.min(gap, this.perSecond.length); i++) {
        this.perSecond[(this.currentSecond + i) % this.perSecond.length] = 0;
      }
      this.currentSecond = second;
    }
    this.perSecond[second % this.perSecond.length]! += n;
  }

  figures(now = Date.now()): ServerFigures {
    return {
      name: this.name,
      state: this.state,
      until: this.until,
      sent: this.sent,
      failed: this.failed,
      deferred: this.deferred,
      rate: Math.round(this.observedRate(now) * 10) / 10,
      limitRate:
        this.adaptiveRate !== undefined
          ? Math.round(this.adaptiveRate * 10) / 10
          : (this.configuredRate ?? null),
      connections: this.allowed,
      reply: this.lastReply,
    };
  }

  private event(kind: SmtpEvent["kind"], reply: string | null, now: number): void {
    this.emit({
      at: new Date(now),
      scope: "server",
      name: this.name,
      kind,
      reply,
      rate: this.adaptiveRate !== undefined ? Math.round(this.adaptiveRate * 10) / 10 : null,
      connections: this.allowed,
      until: this.until,
    });
  }
}
