/** `lovage send --file list.csv --subject … --text …`: submit a campaign and follow it with a progress bar. */
import { createReadStream, openAsBlob } from "node:fs";
import { access } from "node:fs/promises";
import { basename } from "node:path";
import type { CampaignView } from "../../api/present.js";
import { LovageHttpError } from "../../client.js";
import { UnreadableTextError, decodeText } from "../../mail/recipients/parse.js";
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  UsageError,
  connectFrom,
  parse,
  type Command,
} from "../shared.js";

interface Created {
  campaign: CampaignView;
  accepted: number;
  rejected: { line: number; value: string; reason: string }[];
  rejectedCount: number;
}

const FINISHED = new Set(["completed", "cancelled", "paused"]);

export function bar(view: CampaignView, width = 30): string {
  const c = view.counts;
  const done = c.sent + c.failed + c.skipped + c.unknown;
  const fraction = view.total > 0 ? Math.min(1, done / view.total) : 1;
  const filled = Math.round(fraction * width);
  // A paused campaign has no ETA (the API says null); a finished one needs none.
  const eta = view.status === "sending" && view.etaSeconds ? ` eta ${view.etaSeconds}s` : "";
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${view.total} sent ${c.sent} failed ${c.failed} unknown ${c.unknown} · ${view.ratePerMinute}/min${eta}`;
}

/**
 * The bar redrawn in place on a terminal: back to the line's start, the bar cut to the width
 * (a wrapped line could not be redrawn), then erase to the end of the line, so that a shorter
 * bar leaves nothing of a longer one behind.
 */
export function redraw(line: string, columns: number | undefined): string {
  const fitted = columns && columns > 1 && line.length >= columns ? line.slice(0, columns - 1) : line;
  return `\r${fitted}\x1b[K`;
}

/**
 * A message body from a file, read as the server reads uploads (UTF-8, or UTF-16 with a BOM): a
 * file in another encoding would otherwise be sent with "�" in place of every accented letter.
 */
async function readTextFile(option: string, path: string): Promise<string> {
  let text = "";
  try {
    for await (const chunk of decodeText(createReadStream(path))) text += chunk;
  } catch (error) {
    if (error instanceof UnreadableTextError) throw new UsageError(`${option} ${path}: ${error.message}`);
    if ((error as NodeJS.ErrnoException).code === "ENOENT")
      throw new UsageError(`${option} ${path}: no such file`);
    throw error;
  }
  return text;
}

export const send: Command = {
  name: "send",
  summary: "Send a campaign from a CSV or TXT file and follow its progress",
  help: `Usage: lovage send --file LIST --subject SUBJECT (--text TEXT | --text-file F) [--html-file F]
                   [--from ADDRESS] [--name NAME] [--priority N] [--servers NAME,…]
                   [--error-budget SHARE%/WINDOW/MINIMUM | off] [--no-follow]

LIST is a CSV with a header row (an "email" column; every other column is a placeholder
such as {{name}}) or a TXT file with one address per line. Rejected lines are listed with
their line numbers. Then it follows the campaign until it completes (unless --no-follow).
Exit code 0 when every recipient was sent, 1 otherwise.

Text and HTML files are read as UTF-8 (or UTF-16 with a byte order mark) and sent whole;
one larger than the server's LOVAGE_MAX_BODY_BYTES is refused with the limit, nothing sent.

--servers sends only through those SMTP servers (the name= of LOVAGE_SMTP_URL's URLs);
--error-budget replaces LOVAGE_ERROR_BUDGET for this campaign (off: it never pauses itself).

${CONNECTION_HELP}`,
  async run(args, env) {
    const { values } = parse(args, {
      ...CONNECTION_OPTIONS,
      file: { type: "string" },
      subject: { type: "string" },
      text: { type: "string" },
      "text-file": { type: "string" },
      "html-file": { type: "string" },
      from: { type: "string" },
      name: { type: "string" },
      priority: { type: "string" },
      servers: { type: "string" },
      "error-budget": { type: "string" },
      "no-follow": { type: "boolean" },
    });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    if (!values.file) throw new UsageError("--file is required: a CSV or TXT list of recipients");
    if (!values.subject) throw new UsageError("--subject is required");
    const text =
      values.text ??
      (values["text-file"] ? await readTextFile("--text-file", values["text-file"]) : undefined);
    const html = values["html-file"] ? await readTextFile("--html-file", values["html-file"]) : undefined;
    if (text === undefined && html === undefined)
      throw new UsageError("give --text, --text-file or --html-file");
    try {
      await access(values.file);
    } catch {
      throw new UsageError(`--file ${values.file}: no such file`);
    }

    const client = await connectFrom(values, env);
    const form = new FormData();
    form.set("subject", values.subject);
    if (text !== undefined) form.set("text", text);
    if (html !== undefined) form.set("html", html);
    if (values.from) form.set("from", values.from);
    if (values.name) form.set("name", values.name);
    if (values.priority) form.set("priority", values.priority);
    if (values.servers) form.set("servers", values.servers);
    if (values["error-budget"]) form.set("errorBudget", values["error-budget"]);
    // openAsBlob streams the file from disk as the request is sent; it is never read whole.
    form.set("file", await openAsBlob(values.file), basename(values.file));
    const response = await fetch(`${client.url}/api/campaigns`, {
      method: "POST",
      headers: { authorization: `Bearer ${client.token ?? ""}` },
      body: form,
    });
    const body = (await response.json()) as Created & {
      error?: { code: string; message: string; details: unknown };
    };
    if (!response.ok) {
      const details = body.error?.details as { rejected?: Created["rejected"] } | undefined;
      for (const r of details?.rejected?.slice(0, 20) ?? [])
        console.error(`  line ${r.line}: ${r.reason} (${r.value})`);
      throw new LovageHttpError(
        response.status,
        body.error?.code ?? "http_error",
        body.error?.message ?? "failed",
        body.error?.details,
      );
    }
    console.log(
      `Campaign ${body.campaign.id}: ${body.accepted} recipients accepted, ${body.rejectedCount} rejected.`,
    );
    for (const r of body.rejected.slice(0, 20)) console.log(`  line ${r.line}: ${r.reason} (${r.value})`);
    if (body.rejectedCount > 20) console.log(`  … and ${body.rejectedCount - 20} more (see the dashboard)`);
    if (values["no-follow"]) return 0;

    let view = body.campaign;
    const tty = process.stdout.isTTY;
    let lastPrinted = 0;
    while (!FINISHED.has(view.status)) {
      if (tty) process.stdout.write(redraw(bar(view), process.stdout.columns));
      else if (Date.now() - lastPrinted > 5_000) {
        console.log(bar(view));
        lastPrinted = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      view = await client.request<CampaignView>("GET", `/api/campaigns/${view.id}`);
    }
    if (tty) process.stdout.write(`${redraw(bar(view), process.stdout.columns)}\n`);
    else console.log(bar(view));
    console.log(`Campaign ${view.id} ${view.status}${view.statusReason ? `: ${view.statusReason}` : ""}.`);
    return view.counts.sent === view.total ? 0 : 1;
  },
};
