import { describe, expect, it } from "vitest";
import { coalesce } from "../../src/mail/coalesce.js";

/** A run whose calls the test ends by hand, recording what each call carried. */
function controlledRun() {
  const calls: { items: number[]; finish(error?: Error): void }[] = [];
  const run = (items: number[]) =>
    new Promise<number[]>((resolve, reject) => {
      calls.push({ items, finish: (error) => (error ? reject(error) : resolve(items.map((n) => n * 10))) });
    });
  return { calls, run };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("coalesce", () => {
  it("runs a lone call at once, and carries the calls made meanwhile in one next call", async () => {
    const { calls, run } = controlledRun();
    const call = coalesce(run);
    const first = call([1]);
    await tick();
    expect(calls.map((c) => c.items)).toEqual([[1]]);
    const second = call([2, 3]);
    const third = call([4]);
    await tick();
    // Still one call under way: the others wait for it.
    expect(calls).toHaveLength(1);
    calls[0]!.finish();
    expect(await first).toEqual([10]);
    await tick();
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3, 4]]);
    calls[1]!.finish();
    // Each caller gets the whole result of the call that carried its items.
    expect(await second).toEqual([20, 30, 40]);
    expect(await third).toEqual([20, 30, 40]);
  });

  it("gives every caller of a failed call its error, and goes on with the next", async () => {
    const { calls, run } = controlledRun();
    const call = coalesce(run);
    const first = call([1]);
    const second = call([2]);
    const third = call([3]);
    await tick();
    calls[0]!.finish();
    await first;
    await tick();
    calls[1]!.finish(new Error("store down"));
    await expect(second).rejects.toThrow("store down");
    await expect(third).rejects.toThrow("store down");
    const fourth = call([4]);
    await tick();
    calls[2]!.finish();
    expect(await fourth).toEqual([40]);
  });
});
