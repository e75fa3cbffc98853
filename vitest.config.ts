import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Integration tests share real services on a 2-core machine; a few files at a time.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Threads and child processes the code starts from its .ts sources need a loader too.
    execArgv: ["--import", fileURLToPath(new URL("./test/helpers/ts-register.js", import.meta.url))],
    sequence: { groupOrder: 0 },
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: { name: "e2e", include: ["test/e2e/**/*.test.ts"], sequence: { groupOrder: 2 } },
      },
      {
        // Tests that assert a time (healthz within 3 s, event-loop delay): last, one file at a
        // time, with nothing else of the suite sharing the two cores.
        extends: true,
        test: {
          name: "timing",
          include: ["test/timing/**/*.test.ts"],
          sequence: { groupOrder: 3 },
          fileParallelism: false,
        },
      },
    ],
  },
});
