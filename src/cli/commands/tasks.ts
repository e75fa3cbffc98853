/** `lovage tasks [list|show|retry|cancel]`: follow and steer the jobs of a running Lovage. */
import type { JobDetail, JobInfo, JobPage } from "../../queue/producer.js";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  UsageError,
  connectFrom,
  parse,
  type Command,
} from "../shared.js";

const STATES = ["waiting", "delayed", "active", "completed", "failed", "cancelled"];

/** One line of at most `width` characters: long errors and inputs are cut, never wrapped. */
function cut(text: string, width: number): string {
  const line = text.replace(/\s+/g, " ");
  return line.length > width ? `${line.slice(0, width - 1)}…` : line;
}

function table(jobs: JobInfo[]): string {
  const rows = jobs.map((job) => [
    job.id,
    job.name,
    job.state,
    `${job.attemptsMade}/${job.maxAttempts}`,
    job.createdAt.replace("T", " ").slice(0, 19),
    cut(job.error ?? (job.state === "completed" ? (JSON.stringify(job.result) ?? "") : ""), 60),
  ]);
  const header = ["ID", "TASK", "STATE", "ATTEMPTS", "CREATED (UTC)", "RESULT / ERROR"];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)),
  );
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function detail(job: JobDetail): string {
  const lines = [
    `id:        ${job.id}`,
    `task:      ${job.name} (queue ${job.queue})`,
    `state:     ${job.state}`,
    `attempts:  ${job.attemptsMade} of ${job.maxAttempts}`,
    `created:   ${job.createdAt}`,
    `started:   ${job.startedAt ?? "-"}`,
    `finished:  ${job.finishedAt ?? "-"}`,
    `worker:    ${job.worker ?? "-"}`,
    ...(job.scheduleId ? [`schedule:  ${job.scheduleId}`] : []),
    `input:     ${JSON.stringify(job.input)}`,
  ];
  if (job.state === "completed") lines.push(`result:    ${JSON.stringify(job.result)}`);
  if (job.error) lines.push(`error:     ${job.error}`);
  if (job.attempts.length > 0) {
    lines.push("failed attempts:");
    for (const attempt of job.attempts) {
      lines.push(`  #${attempt.attempt} ${attempt.startedAt} on ${attempt.worker}: ${attempt.error}`);
    }
  }
  if (job.stack) lines.push("stack:", ...job.stack.split("\n").map((line) => `  ${line}`));
  return lines.join("\n");
}

export const tasks: Command = {
  name: "tasks",
  summary: "List jobs, show one with its attempts, retry or cancel it",
  help: `Usage: lovage tasks [list] [--state STATE] [--name TASK] [--queue QUEUE] [--search TEXT]
                   [--limit N] [--cursor CURSOR] [--json]
       lovage tasks show JOB_ID [--json]
       lovage tasks retry JOB_ID
       lovage tasks cancel JOB_ID

list     jobs newest first (default 50); STATE is one of ${STATES.join(", ")}.
         When there are more, the cursor of the next page is printed on stderr.
show     a job: input, result or error with its stack, times, worker and failed attempts.
retry    runs a failed or cancelled job again (its attempts reset).
cancel   removes a waiting or delayed job; stops an active one (its handler's signal fires)
         and it ends cancelled, never retried.

  lovage tasks --state failed --name add
  lovage tasks retry default:0b6c…

${CONNECTION_HELP}`,
  async run(args, env) {
    const { values, positionals } = parse(
      args,
      {
        ...CONNECTION_OPTIONS,
        state: { type: "string" },
        name: { type: "string" },
        queue: { type: "string" },
        search: { type: "string" },
        limit: { type: "string" },
        cursor: { type: "string" },
        json: { type: "boolean" },
      },
      true,
    );
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [action = "list", id, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
    if (!["list", "show", "retry", "cancel"].includes(action)) {
      throw new UsageError(`unknown action "${action}": expected list, show, retry or cancel`);
    }
    if (action === "list" && id !== undefined) throw new UsageError(`unexpected argument: ${id}`);
    if (action !== "list" && id === undefined)
      throw new UsageError(`which job? lovage tasks ${action} JOB_ID`);
    if (values.state !== undefined && !STATES.includes(values.state)) {
      throw new UsageError(`--state expects one of ${STATES.join(", ")}, got "${values.state}"`);
    }
    if (values.limit !== undefined && !/^\d+$/.test(values.limit)) {
      throw new UsageError(`--limit expects a whole number, got "${values.limit}"`);
    }
    const client = await connectFrom(values, env);
    const path = `/api/tasks/${encodeURIComponent(id ?? "")}`;

    if (action === "list") {
      const query = new URLSearchParams();
      for (const [key, value] of [
        ["state", values.state],
        ["name", values.name],
        ["queue", values.queue],
        ["q", values.search],
        ["limit", values.limit],
        ["cursor", values.cursor],
      ] as const) {
        if (value !== undefined) query.set(key, value);
      }
      const page = await client.request<JobPage>("GET", `/api/tasks?${query.toString()}`);
      if (values.json) console.log(JSON.stringify(page, null, 2));
      else console.log(page.tasks.length > 0 ? table(page.tasks) : "no jobs");
      if (page.nextCursor && !values.json) console.error(`more: --cursor ${page.nextCursor}`);
      return 0;
    }
    if (action === "show") {
      const job = await client.request<JobDetail>("GET", path);
      console.log(values.json ? JSON.stringify(job, null, 2) : detail(job));
      return 0;
    }
    const job = await client.request<JobInfo>("POST", `${path}/${action}`);
    console.log(`${job.id} ${job.state}`);
    return 0;
  },
};
