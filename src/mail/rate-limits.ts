/**
 * Limits that hold across every worker: messages per second to an SMTP server (`rate=` on its
 * URL) and to a recipient domain or provider group (`LOVAGE_DOMAIN_LIMITS`).
 *
 * The counting is rate-limiter-flexible's, on whatever every worker shares: Redis when the
 * broker is Redis, else the store's PostgreSQL (or the embedded PGlite, through its pg.Pool),
 * or memory for a single process. A rate R is cut into fixed windows of w ms holding p = R·w
 * messages each (w about 20 ms, p at least 1); a window's count is one atomic counter of the
 * library, keyed by the window's number, so all workers together never put more than p in a
 * window. Fixed windows let a burst straddle a boundary (p at the end of one, p at the start of
 * the next), so the windows are sized for an average of 95% of R − p: then no one-second span,
 * however placed, holds more than R messages (below a rate of 2/s, R + 1), with room left for
 * the network's jitter between the counter and the server. Windows are numbered from
 * each worker's clock: workers on different machines need their clocks in step (NTP) for the
 * bound to hold exactly.
 *
 * It owns no connections: the wiring hands it a Redis client or a pg.Pool and closes them.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { giveBackConnectionLease, takeConnectionLease } from "../db/connection-leases.js";
import type pg from "pg";
import {
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
  RateLimiterRes,
  type RateLimiterAbstract,
} from "rate-limiter-flexible";

/** Where the counters live; one per process, shared by every limit of that process. */
export type CounterBackend =
  | { kind: "memory" }
  | { kind: "redis"; client: Redis; prefix?: string }
  | { kind: "postgres"; pool: pg.Pool };

/** One atomic counter per window: takes a message, or says how long until the next window. */
export interface RateCounters {
  /** 0 when a message may go now (and counts it), else the milliseconds to wait before asking again. */
  take(key: string, perSecond: number): Promise<number>;
  /**
   * Waits its turn among this process's waiters for `key` (first come, first served), then for
   * a window with room, until `until` at most: 0 once the message is counted, else how long it
   * would still have to wait. One waiter per key and process asks the store at a time, so a
   * limit costs the store about one request per window per worker, not one per waiting message.
   */
  admit(key: string, perSecond: number, until: number): Promise<number>;
  /**
   * Takes one of `limit` connections of `key` that every worker shares, for `leaseMs` at most
   * (a worker that dies gives it back then): a token to give it back with, or undefined when
   * all are taken.
   */
  hold(key: string, limit: number, leaseMs: number): Promise<string | undefined>;
  giveBack(key: string, token: string): Promise<void>;
}

/**
 * Redis: a sorted set of holders by lease end; the expired ones are dropped and the count
 * checked in one script, so two workers never both take the last connection.
 */
const HOLD_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

/** Target window: small enough that R + p stays close to R, large enough for the store's round trips. */
const WINDOW_TARGET_MS = 20;

export function windowOf(perSecond: number): { points: number; windowMs: number } {
  const points = Math.max(1, Math.floor((perSecond * WINDOW_TARGET_MS) / 1000));
  // k windows in a row can hold (k + 1)·p within less than k window lengths; with windows of
  // p/(R − p) s, any second spans fewer than R/p − 1 whole ones, so at most R messages. The 5%
  // off is for the way from the counter to the server: messages counted while the pool opens
  // its connections leave together once it has (measured: up to 5 over the bound at 50/s).
  if (perSecond < 2) return { points, windowMs: 1000 / perSecond };
  return { points, windowMs: (points * 1000) / ((perSecond - points) * 0.95) };
}

export function createRateCounters(backend: CounterBackend): RateCounters {
  // rate-limiter-flexible takes its points per limiter, so one limiter per (points, expiry).
  const limiters = new Map<string, RateLimiterAbstract>();
  function limiterFor(points: number, expirySeconds: number): RateLimiterAbstract {
    const id = `${points}/${expirySeconds}`;
    let limiter = limiters.get(id);
    if (limiter) return limiter;
    const options = { points, duration: expirySeconds, keyPrefix: "lovage-rate" };
    switch (backend.kind) {
      case "memory":
        limiter = new RateLimiterMemory(options);
        break;
      case "redis":
        limiter = new RateLimiterRedis({
          ...options,
          keyPrefix: backend.prefix ?? "lovage-rate",
          storeClient: backend.client,
        });
        break;
      case "postgres":
        // The table is migration 0005's (schema lovage), so the library creates nothing; its
        // timer that deletes expired rows is unref'd by the library and runs every 5 minutes.
        limiter = new RateLimiterPostgres({
          ...options,
          // Unnamed statements: the library names its prepared statements, which the embedded
          // database's sessions share (one is prepared once for all), so a second session
          // preparing the same name would fail.
          storeClient: {
            query: (q: { text: string; values?: unknown[] }) => backend.pool.query(q.text, q.values),
          },
          storeType: "pool",
          schemaName: "lovage",
          tableName: "rate_limits",
          tableCreated: true,
        });
        break;
    }
    limiters.set(id, limiter);
    return limiter;
  }

  const tails = new Map<string, Promise<void>>();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  async function take(key: string, perSecond: number): Promise<number> {
    const { points, windowMs } = windowOf(perSecond);
    const now = Date.now();
    const index = Math.floor(now / windowMs);
    // Redis expiries are whole seconds; a key outlives its window, which is all it must do.
    const limiter = limiterFor(points, Math.ceil(windowMs / 1000) + 1);
    try {
      await limiter.consume(`${key}:${Math.round(windowMs * 1000)}:${index}`, 1);
      return 0;
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      // A little jitter so that the waiters of every worker do not all ask at the same instant.
      return Math.max(1, Math.ceil((index + 1) * windowMs - now)) + Math.floor(Math.random() * 3);
    }
  }

  async function admit(key: string, perSecond: number, until: number): Promise<number> {
    const previous = tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    tails.set(key, tail);
    try {
      let timer: NodeJS.Timeout | undefined;
      const turn = await Promise.race([
        previous.then(() => true),
        new Promise<false>(
          (resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, until - Date.now()))),
        ),
      ]);
      clearTimeout(timer);
      // Still behind others at the deadline: about one message time per waiter ahead.
      if (!turn) return Math.ceil(1000 / perSecond);
      for (;;) {
        const wait = await take(key, perSecond);
        if (wait === 0) return 0;
        if (Date.now() + wait > until) return wait;
        await sleep(wait);
      }
    } finally {
      release();
      if (tails.get(key) === tail) tails.delete(key);
    }
  }

  const memoryLeases = new Map<string, Map<string, number>>();

  async function hold(key: string, limit: number, leaseMs: number): Promise<string | undefined> {
    const token = randomUUID();
    const now = Date.now();
    switch (backend.kind) {
      case "memory": {
        const leases = memoryLeases.get(key) ?? new Map<string, number>();
        memoryLeases.set(key, leases);
        for (const [holder, until] of leases) if (until <= now) leases.delete(holder);
        if (leases.size >= limit) return undefined;
        leases.set(token, now + leaseMs);
        return token;
      }
      case "redis": {
        const prefix = backend.prefix ?? "lovage-rate";
        const taken = await backend.client.eval(
          HOLD_SCRIPT,
          1,
          `${prefix}:conn:${key}`,
          now,
          limit,
          now + leaseMs,
          token,
          leaseMs,
        );
        return taken === 1 ? token : undefined;
      }
      case "postgres":
        return (await takeConnectionLease(backend.pool, key, token, limit, leaseMs)) ? token : undefined;
    }
  }

  async function giveBack(key: string, token: string): Promise<void> {
    switch (backend.kind) {
      case "memory":
        memoryLeases.get(key)?.delete(token);
        return;
      case "redis":
        await backend.client.zrem(`${backend.prefix ?? "lovage-rate"}:conn:${key}`, token);
        return;
      case "postgres":
        await giveBackConnectionLease(backend.pool, key, token);
        return;
    }
  }

  return { take, admit, hold, giveBack };
}

/**
 * A provider group: the domains one receiver serves, and the limits it sets. The smallest limit
 * that applies to a message (its server's, its group's) wins.
 */
export interface DomainGroup {
  readonly name: string;
  readonly domains: readonly string[];
  /** Messages per second to the group, across every worker; undefined is none. */
  readonly rate: number | undefined;
  /** SMTP transactions in flight to the group, across every worker; undefined is none. */
  readonly connections: number | undefined;
}

/** Built in so that `google:20/s` needs no list; an entry of LOVAGE_DOMAIN_LIMITS replaces its domains when it gives some. */
export const BUILT_IN_GROUPS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  google: ["gmail.com", "googlemail.com"],
  microsoft: ["outlook.com", "hotmail.com", "live.com", "msn.com"],
  yahoo: ["yahoo.com", "ymail.com", "aol.com"],
});

const UNITS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600 };

/**
 * Parses `LOVAGE_DOMAIN_LIMITS`: entries separated by `;`, each
 * `name[=domain,domain…]:limit[:limit]` where a limit is `N/s`, `N/min`, `N/h` or `Nconn`.
 * A name that is a domain (it has a dot) and no list is that one domain. Throws naming the
 * entry that is wrong.
 */
export function parseDomainLimits(raw: string | undefined): DomainGroup[] {
  const groups = new Map<string, DomainGroup>();
  for (const [name, domains] of Object.entries(BUILT_IN_GROUPS)) {
    groups.set(name, { name, domains, rate: undefined, connections: undefined });
  }
  const claimed = new Map<string, string>();
  for (const entry of (raw ?? "").split(";").map((part) => part.trim())) {
    if (entry === "") continue;
    const [head, ...limits] = entry.split(":").map((part) => part.trim());
    const [name, list] = head!.split("=").map((part) => part.trim());
    if (!name || !/^[a-z0-9][a-z0-9.-]*$/i.test(name)) {
      throw new Error(`"${entry}": expected name[=domain,…]:limit, like google=gmail.com:20/s:5conn`);
    }
    let domains: string[];
    if (list !== undefined) {
      domains = list.split(",").map((d) => d.trim().toLowerCase());
      const bad = domains.find((d) => !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(d));
      if (bad !== undefined) throw new Error(`"${entry}": "${bad}" is not a domain`);
    } else if (groups.has(name.toLowerCase())) {
      domains = [...groups.get(name.toLowerCase())!.domains];
    } else if (name.includes(".")) {
      domains = [name.toLowerCase()];
    } else {
      throw new Error(
        `"${entry}": group "${name}" is not built in (${Object.keys(BUILT_IN_GROUPS).join(", ")}): list its domains, name=domain,…`,
      );
    }
    if (limits.length === 0) throw new Error(`"${entry}": no limit (like 20/s, 600/min or 5conn)`);
    let rate: number | undefined;
    let connections: number | undefined;
    for (const limit of limits) {
      const perTime = /^(\d+(?:\.\d+)?)\/(s|sec|m|min|h)$/.exec(limit);
      const conn = /^(\d+)conn$/.exec(limit);
      if (perTime && Number(perTime[1]) > 0) {
        rate = Math.min(rate ?? Infinity, Number(perTime[1]) / UNITS[perTime[2]!]!);
      } else if (conn && Number(conn[1]) >= 1) {
        connections = Math.min(connections ?? Infinity, Number(conn[1]));
      } else {
        throw new Error(
          `"${entry}": "${limit}" is not a limit (expected like 20/s, 600/min, 3600/h or 5conn)`,
        );
      }
    }
    const key = name.toLowerCase();
    for (const domain of domains) {
      const other = claimed.get(domain);
      if (other !== undefined && other !== key)
        throw new Error(`"${entry}": ${domain} is already in group "${other}"`);
      claimed.set(domain, key);
    }
    groups.set(key, { name: key, domains, rate, connections });
  }
  return [...groups.values()];
}

/** The group of a recipient's domain: a configured one, or the domain itself with no limit. */
export function groupLookup(groups: readonly DomainGroup[]): (domain: string) => DomainGroup {
  const byDomain = new Map<string, DomainGroup>();
  for (const group of groups) for (const domain of group.domains) byDomain.set(domain, group);
  return (domain) =>
    byDomain.get(domain) ?? { name: domain, domains: [domain], rate: undefined, connections: undefined };
}
