/**
 * Reading suppression entries a user gives: a JSON list, or a CSV/TXT import (an `email`
 * column and an optional `reason` column, or one address per line). Each bad line is reported
 * with its number and why, and the good ones are kept, as recipients are.
 *
 * Never: lets an import weaken an entry (db/suppressions.ts keeps the stronger reason).
 */
import { parse } from "csv-parse/sync";
import { ALL_SUPPRESSION_REASONS, type NewSuppression, type SuppressionReason } from "../db/suppressions.js";
import type { Rejected } from "./recipients/parse.js";
import { validateEmail } from "./recipients/parse.js";

export interface SuppressionInput {
  email: string;
  reason?: string | undefined;
  detail?: string | undefined;
}

export interface ParsedSuppressions {
  entries: NewSuppression[];
  rejected: Rejected[];
}

function entryOf(line: number, input: SuppressionInput, shown: string): NewSuppression | Rejected {
  const checked = validateEmail(input.email);
  if (!checked.ok) return { line, value: shown, reason: checked.reason };
  const reason = (input.reason?.trim().toLowerCase() || "manual") as SuppressionReason;
  if (!ALL_SUPPRESSION_REASONS.includes(reason)) {
    return { line, value: shown, reason: `reason must be one of ${ALL_SUPPRESSION_REASONS.join(", ")}` };
  }
  return { email: checked.email, reason, detail: input.detail?.trim() || null };
}

function collect(items: [line: number, input: SuppressionInput, shown: string][]): ParsedSuppressions {
  const entries: NewSuppression[] = [];
  const rejected: Rejected[] = [];
  for (const [line, input, shown] of items) {
    const entry = entryOf(line, input, shown);
    if ("line" in entry) rejected.push(entry);
    else entries.push(entry);
  }
  return { entries, rejected };
}

export function parseSuppressionList(items: readonly SuppressionInput[]): ParsedSuppressions {
  return collect(items.map((item, index) => [index + 1, item, item.email]));
}

/** A CSV with a header naming an `email` column (and maybe `reason`, `detail`), or one address per line. */
export function parseSuppressionImport(text: string): ParsedSuppressions {
  const body = text.replace(/^\uFEFF/, "");
  const firstLine = body.split(/\r?\n/, 1)[0] ?? "";
  if (!/(^|[,;\t"])\s*email\s*("|[,;\t]|$)/i.test(firstLine)) {
    const lines = body.split(/\r?\n/);
    return collect(
      lines
        .map((line, index): [number, SuppressionInput, string] => [
          index + 1,
          { email: line.trim() },
          line.trim(),
        ])
        .filter(([, input]) => input.email !== "" && !input.email.startsWith("#")),
    );
  }
  const delimiter = [",", ";", "\t"].find((d) => firstLine.includes(d)) ?? ",";
  let records: Record<string, string>[];
  try {
    records = parse<Record<string, string>>(body, {
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      delimiter,
      skip_empty_lines: true,
      relax_column_count: true,
      trim: true,
    });
  } catch (error) {
    throw new Error(`the CSV cannot be read: ${(error as Error).message}`, { cause: error });
  }
  // Line numbers as a spreadsheet shows them: the header is line 1.
  return collect(
    records.map((record, index): [number, SuppressionInput, string] => [
      index + 2,
      { email: record.email ?? "", reason: record.reason, detail: record.detail },
      record.email ?? "",
    ]),
  );
}
