/**
 * The million-recipient run of `npm run bench`: on one topology, a 10,000-recipient campaign
 * first (its send rate is the reference), then a 1,000,000-row CSV (`email,name,company`,
 * about 45 MB, written to a temporary file) uploaded through `POST /api/campaigns` as a user
 * would. It measures the upload's acceptance time, the Lovage processes' peak RSS throughout,
 * how fast the campaign's detail and the first page of its log answer while it sends, and the
 * send rate over the campaign's first minute as a share of the 10,000-recipient rate. Then it
 * cancels the campaign: sending all of it would take a quarter of an hour and measure nothing
 * more.
 *
 * It measures; it fails only when a step breaks (a non-2xx answer, a wrong count).
 */
import { createWriteStream, mkdtempSync, openAsBlob, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { api } from "../test/helpers/lovage-process.js";
import { FROM, SUBJECT, TEXT, recipients } from "./message.js";
import { peakRssBytes, rssBytes } from "./proc.js";
import { sendCampaign, withTopology, type LovageSettings, type Topology } from "./run-lovage.js";
import { startSink } from "./start-sink.js";

export interface MillionResult {
  rows: number;
  csvBytes: number;
  acceptMs: number;
  peakRssBytes: number;
  processes: number;
  /** Milliseconds, over the first minute of sending. */
  detailMs: { p50: number; max: number };
  firstPageMs: { p50: number; max: number };
  firstMinuteRate: number;
  referenceRate: number;
}

interface CampaignView {
  id: number;
  status: string;
  counts: Record<string, number>;
}

const REFERENCE_N = 10_000;
const FIRST_MINUTE_MS = 60_000;

/** Writes the CSV a streamed upload reads: `rows` lines under a header, as a user's export would be. */
async function writeCsv(path: string, rows: number): Promise<number> {
  const out = createWriteStream(path);
  let bytes = 0;
  const write = async (line: string) => {
    bytes += Buffer.byteLength(line);
    if (!out.write(line)) await once(out, "drain");
  };
  await write("email,name,company\n");
  for (let i = 0; i < rows; i++) {
    await write(`member${String(i).padStart(7, "0")}@million.lovage.test,Member ${i},Company ${i % 997}\n`);
  }
  out.end();
  await once(out, "finish");
  return bytes;
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(0);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const begin = performance.now();
  const value = await work();
  return { value, ms: performance.now() - begin };
}

export async function runMillion(
  topology: Topology,
  options: { rows: number; lovage: LovageSettings; timeoutMs: number; log(line: string): void },
): Promise<MillionResult> {
  const dir = mkdtempSync(join(tmpdir(), "lovage-million-"));
  const sink = await startSink(0);
  const env = { LOVAGE_SMTP_URL: sink.url, LOVAGE_LOG_LEVEL: "warn", ...options.lovage.env };
  let sampler: NodeJS.Timeout | undefined;
  try {
    const csv = join(dir, "million.csv");
    const csvBytes = await writeCsv(csv, options.rows);
    return await withTopology(topology, env, options, async ({ lovage, pids }) => {
      let peakSampled = 0;
      sampler = setInterval(() => {
        peakSampled = Math.max(
          peakSampled,
          pids.reduce((sum, pid) => sum + (rssBytes(pid) ?? 0), 0),
        );
      }, 200);

      const reference = await sendCampaign(lovage, recipients(REFERENCE_N, "reference"), options);
      const referenceRate = REFERENCE_N / (reference.wallMs / 1000);
      options.log(
        `  ${REFERENCE_N} recipients at ${referenceRate.toFixed(0)} emails/s (peak RSS so far ${mb(peakSampled)} MB)`,
      );

      const form = new FormData();
      form.set("name", "a million");
      form.set("from", FROM);
      form.set("subject", SUBJECT);
      form.set("text", TEXT.replace("{{name}},", "{{name}} of {{company}},"));
      form.set("file", await openAsBlob(csv, { type: "text/csv" }), "million.csv");
      const upload = await timed(() =>
        fetch(`${lovage.url}/api/campaigns`, {
          method: "POST",
          headers: { authorization: `Bearer ${lovage.token}` },
          body: form,
          signal: AbortSignal.timeout(options.timeoutMs),
        }),
      );
      const created = (await upload.value.json()) as { campaign?: CampaignView; accepted?: number };
      if (upload.value.status !== 202 || created.accepted !== options.rows) {
        throw new Error(
          `the upload answered ${upload.value.status}: ${JSON.stringify(created).slice(0, 300)}`,
        );
      }
      const id = created.campaign!.id;
      options.log(
        `  ${options.rows} rows accepted in ${(upload.ms / 1000).toFixed(1)} s (peak RSS so far ${mb(peakSampled)} MB)`,
      );

      const detailMs: number[] = [];
      const firstPageMs: number[] = [];
      const sendingFrom = performance.now();
      let sent = 0;
      while (performance.now() - sendingFrom < FIRST_MINUTE_MS) {
        const detail = await timed(() => api<CampaignView>(lovage, "GET", `/api/campaigns/${id}`));
        const page = await timed(() => api(lovage, "GET", `/api/campaigns/${id}/recipients?limit=100`));
        if (detail.value.status !== 200 || page.value.status !== 200) {
          throw new Error(`while sending: detail ${detail.value.status}, first page ${page.value.status}`);
        }
        detailMs.push(detail.ms);
        firstPageMs.push(page.ms);
        sent = detail.value.body.counts.sent ?? 0;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      const firstMinuteRate = sent / ((performance.now() - sendingFrom) / 1000);
      const cancelled = await api(lovage, "POST", `/api/campaigns/${id}/cancel`);
      if (cancelled.status !== 200) throw new Error(`cancel answered ${cancelled.status}`);
      clearInterval(sampler);
      const peak = Math.max(
        peakSampled,
        pids.reduce((sum, pid) => sum + (peakRssBytes(pid) ?? 0), 0),
      );
      return {
        rows: options.rows,
        csvBytes,
        acceptMs: upload.ms,
        peakRssBytes: peak,
        processes: pids.length,
        detailMs: { p50: median(detailMs), max: Math.max(...detailMs) },
        firstPageMs: { p50: median(firstPageMs), max: Math.max(...firstPageMs) },
        firstMinuteRate,
        referenceRate,
      };
    });
  } finally {
    clearInterval(sampler);
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
