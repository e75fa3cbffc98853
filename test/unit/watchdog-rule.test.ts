import { describe, expect, it } from "vitest";
import { isStuck } from "../../src/queue/worker.js";

describe("isStuck", () => {
  const base = { waiting: 5, active: 0, concurrency: 4, lastProgressAt: 0, now: 60_000, idleMs: 30_000 };

  it("says a worker with free slots that started nothing while jobs waited past the idle time is stuck", () => {
    expect(isStuck(base)).toBe(true);
  });

  it("says nothing waits, so nothing is stuck", () => {
    expect(isStuck({ ...base, waiting: 0 })).toBe(false);
  });

  it("says a worker whose slots are all busy is not stuck", () => {
    expect(isStuck({ ...base, active: 4 })).toBe(false);
  });

  it("waits the whole idle time before calling it stuck", () => {
    expect(isStuck({ ...base, lastProgressAt: 40_000 })).toBe(false);
  });
});
