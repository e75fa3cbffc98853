/**
 * The original demo's task: add two numbers. `lovage start` registers it by default
 * (LOVAGE_TASKS), so `lovage call add '{"a":10,"b":20}' --wait` prints 30.
 */
import { z } from "zod";
import { defineTask } from "../../src/queue/task.js";

export const add = defineTask("add", {
  input: z.object({ a: z.number(), b: z.number() }),
  handler: ({ a, b }) => a + b,
});
