/** `lovage start`, `lovage api`, `lovage worker`: three wirings of the same parts. */
import type { Config } from "../../config.js";
import type { Roles } from "../../main.js";
import {
  adminPasswordPath,
  readAdminPasswordFile,
  removeAdminPasswordFile,
  writeAdminPasswordFile,
} from "../admin-password-file.js";
import { configFrom, parse, type Command } from "../shared.js";

/**
 * How to log in, for the banner. Saves a generated password for the CLI on this machine, and
 * removes a saved one that a chosen password (LOVAGE_ADMIN_PASSWORD) has made wrong.
 */
function adminPasswordLine(config: Config, generated: string | undefined): string {
  const path = adminPasswordPath(config.dataDir);
  if (generated) {
    let saved: string;
    try {
      writeAdminPasswordFile(config.dataDir, generated);
      saved = `saved in ${path} for the lovage command on this machine`;
    } catch (error) {
      saved = `not saved: ${(error as Error).message}`;
    }
    return `Log in as admin with password: ${generated}\n  (generated on this first start and shown once; ${saved})`;
  }
  if (config.adminPassword) {
    removeAdminPasswordFile(config.dataDir);
    return "Log in as admin with the password in LOVAGE_ADMIN_PASSWORD.";
  }
  if (readAdminPasswordFile(config.dataDir) !== undefined) {
    return `Log in as admin with the password saved in ${path} on the first start.`;
  }
  return "Log in as admin with the password shown on the first start (or set LOVAGE_ADMIN_PASSWORD).";
}

function serve(name: string, roles: Roles, summary: string, extra: string): Command {
  return {
    name,
    summary,
    help: `Usage: lovage ${name}${roles.worker ? " [--concurrency N] [--queues a,b]" : ""}

${summary}.
${extra}
Settings come from the environment; see the README (LOVAGE_DATA_DIR, LOVAGE_DATABASE_URL,
LOVAGE_BROKER_URL, LOVAGE_SMTP_URL, PORT, LOVAGE_ADMIN_PASSWORD, …).`,
    async run(args, env) {
      const { values } = parse(args, { concurrency: { type: "string" }, queues: { type: "string" } });
      if (values.help) {
        console.log(this.help);
        return 0;
      }
      const config = configFrom({
        ...env,
        ...(values.concurrency ? { LOVAGE_CONCURRENCY: values.concurrency } : {}),
        ...(values.queues ? { LOVAGE_QUEUES: values.queues } : {}),
      });
      // Loaded here, not at the top: the other commands and --help need none of the server.
      const { startLovage } = await import("../../main.js");
      const lovage = await startLovage(config, roles);
      // One write, after every start-up log line: the banner reads as a whole, and whoever waits
      // for its first line (scripts, tests) has the rest too.
      const banner: string[] = [""];
      if (lovage.url) {
        banner.push(
          `Lovage is running at ${lovage.url}`,
          `  ${adminPasswordLine(config, lovage.generatedAdminPassword)}`,
          `  API documentation: ${lovage.url}/api/docs`,
        );
        if (lovage.catcherUrl) {
          banner.push(`  Mail catcher: ${lovage.catcherUrl} (caught messages are shown in the dashboard)`);
        }
      }
      if (lovage.worker) {
        const w = lovage.worker;
        // Tests and scripts wait for this line to know a worker is ready.
        banner.push(
          `Lovage worker ${w.id} is running (queues ${w.queues.join(", ")}, concurrency ${w.concurrency})`,
        );
        if (!lovage.url && lovage.catcherUrl) banner.push(`  Mail catcher: ${lovage.catcherUrl}`);
      }
      console.log(`${banner.join("\n")}\n`);

      return new Promise<number>((resolve) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) {
            lovage.logger.warn({ signal }, "second signal: exiting now");
            resolve(1);
            return;
          }
          stopping = true;
          lovage.logger.info({ signal }, "stopping: finishing jobs in flight");
          lovage.close().then(
            () => resolve(0),
            (error: unknown) => {
              lovage.logger.error({ err: error }, "error while stopping");
              resolve(1);
            },
          );
        };
        process.on("SIGTERM", () => stop("SIGTERM"));
        process.on("SIGINT", () => stop("SIGINT"));
        // A worker asked to stop from the API has nothing left to do in a worker-only process.
        if (!roles.api) void lovage.workerStopped?.then(() => stop("remote shutdown"));
      });
    },
  };
}

export const start = serve(
  "start",
  { api: true, worker: true },
  "Run everything in one process: HTTP API, dashboard, dispatcher and workers",
  "With no LOVAGE_DATABASE_URL it keeps its data in an embedded PostgreSQL (PGlite) in\nLOVAGE_DATA_DIR, and with no LOVAGE_SMTP_URL it delivers to its built-in mail catcher.",
);
export const api = serve(
  "api",
  { api: true, worker: false },
  "Run the HTTP API, dashboard and dispatcher, without sending",
  "Run any number of them; they share LOVAGE_DATABASE_URL and LOVAGE_BROKER_URL.",
);
export const worker = serve(
  "worker",
  { api: false, worker: true },
  "Run a worker: sends mail and runs tasks, without HTTP",
  "Run any number of them, on any host that reaches the database and the broker.",
);
