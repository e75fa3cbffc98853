/** `lovage call TASK [JSON] [--wait]`: send a task to a running Lovage and print its job id or result. */
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  UsageError,
  connectFrom,
  parse,
  type Command,
} from "../shared.js";

export const call: Command = {
  name: "call",
  summary: "Send a task by name, and with --wait print its result",
  help: `Usage: lovage call TASK [INPUT_JSON] [--wait] [--timeout SECONDS] [--priority N] [--delay MS] [--key KEY]

Sends TASK with INPUT_JSON (default {}) and prints the job id; with --wait, waits for the
job and prints its result as JSON (exit 1 if it failed).

  lovage call add '{"a":10,"b":20}' --wait      prints 30

${CONNECTION_HELP}`,
  async run(args, env) {
    const { values, positionals } = parse(
      args,
      {
        ...CONNECTION_OPTIONS,
        wait: { type: "boolean" },
        timeout: { type: "string" },
        priority: { type: "string" },
        delay: { type: "string" },
        key: { type: "string" },
      },
      true,
    );
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [name, json, ...extra] = positionals;
    if (!name) throw new UsageError("which task? lovage call TASK [INPUT_JSON]");
    if (extra.length > 0)
      throw new UsageError(`unexpected arguments: ${extra.join(" ")} (quote the JSON input)`);
    let input: unknown = {};
    if (json !== undefined) {
      try {
        input = JSON.parse(json);
      } catch (error) {
        throw new UsageError(`INPUT_JSON is not valid JSON: ${(error as Error).message}`);
      }
    }
    const number = (flag: string, raw: string | undefined) => {
      if (raw === undefined) return undefined;
      const value = Number(raw);
      if (!Number.isFinite(value)) throw new UsageError(`--${flag} expects a number, got "${raw}"`);
      return value;
    };
    const client = await connectFrom(values, env);
    const job = await client.send(name, input, {
      priority: number("priority", values.priority),
      delayMs: number("delay", values.delay),
      idempotencyKey: values.key,
    });
    if (!values.wait) {
      console.log(job.id);
      return 0;
    }
    const timeoutSeconds = number("timeout", values.timeout) ?? 300;
    const result = await job.result({ timeoutMs: timeoutSeconds * 1000 });
    console.log(JSON.stringify(result));
    return 0;
  },
};
