/**
 * A distributed Lovage made of real processes: `lovage api` and `lovage worker`, sharing a
 * PostgreSQL and a broker given in `env`. Fault tests add, kill and restart its members.
 */
import { startLovage, type LovageProcess } from "./lovage-process.js";

export interface Cluster {
  apis: LovageProcess[];
  workers: LovageProcess[];
  /** The first API, for requests. */
  api: LovageProcess;
  addWorker(): Promise<LovageProcess>;
  stop(): Promise<void>;
}

export const CLUSTER_SECRETS = {
  LOVAGE_ADMIN_PASSWORD: "cluster-password-1",
  LOVAGE_JWT_SECRET: "a-shared-secret-of-at-least-32-characters!",
};

export async function startCluster(options: {
  env: Record<string, string>;
  apis?: number;
  workers?: number;
}): Promise<Cluster> {
  const env = { ...CLUSTER_SECRETS, ...options.env };
  const apis: LovageProcess[] = [];
  const workers: LovageProcess[] = [];
  const addWorker = async () => {
    const worker = await startLovage({ command: "worker", env });
    workers.push(worker);
    return worker;
  };
  try {
    // The first API migrates; the rest start together, as they would on several hosts.
    apis.push(await startLovage({ command: "api", env }));
    const more = await Promise.all([
      ...Array.from({ length: (options.apis ?? 1) - 1 }, () => startLovage({ command: "api", env })),
    ]);
    apis.push(...more);
    await Promise.all(Array.from({ length: options.workers ?? 1 }, addWorker));
  } catch (error) {
    await Promise.all([...apis, ...workers].map((p) => p.dispose()));
    throw error;
  }
  return {
    apis,
    workers,
    api: apis[0]!,
    addWorker,
    async stop() {
      await Promise.all([...workers, ...apis].map((p) => p.dispose()));
    },
  };
}
