/**
 * Recipient input: turns what a user pastes, posts as JSON or uploads (CSV or TXT) into recipients
 * and rejections, each with the 1-based line it came from and a reason a person can act on.
 *
 * Owns: address validation (`validateEmail`, whose lowercased result is the dedupe key), the
 * pasted-line formats (`email`, `Name <email>`, `email,name`), CSV header and row rules, and the
 * physical line numbers reported back to the user.
 *
 * Never: touches the database, the queue or the network; removes duplicates (the database dedupes
 * on the lowercased address, so a repeated address is neither accepted twice nor rejected here);
 * holds a whole upload in memory (`parseUpload` streams); throws for a bad row (bad rows become
 * `Rejected` items so every problem is reported at once; only a file that cannot be read as a
 * whole, such as a CSV without an email column, throws).
 */
import { createInterface } from "node:readline";
import { Readable, pipeline } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { CsvError, parse as parseCsv } from "csv-parse";

export type Recipient = { line: number; email: string; fields: Record<string, string> };
export type Rejected = { line: number; value: string; reason: string };
export type ParseItem = { ok: true; recipient: Recipient } | { ok: false; rejected: Rejected };

const MAX_ADDRESS_CHARS = 254;
const MAX_LOCAL_CHARS = 64;
const MAX_LABEL_CHARS = 63;
const MAX_VALUE_CHARS = 200;
// Enough for any real header line; a file with no newline must not be buffered whole to sniff it.
const MAX_SNIFF_CHARS = 64 * 1024;
// A quote that is never closed would otherwise swallow the rest of the file into one field.
const MAX_CSV_RECORD_CHARS = 1024 * 1024;

// atext of RFC 5322 plus letters, marks and digits of any script (RFC 6531 internationalized mail).
const LOCAL_BAD_CHAR = /[^\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~.-]/u;
const LABEL_BAD_CHAR = /[^\p{L}\p{M}\p{N}-]/u;
const DELIMITERS = [",", ";", "\t"] as const;

export function validateEmail(raw: string): { ok: true; email: string } | { ok: false; reason: string } {
  const trimmed = raw.trim();
  if (trimmed === "") return { ok: false, reason: "empty" };
  if (/\s/u.test(trimmed)) return { ok: false, reason: "whitespace inside the address" };
  // NFC so that "é" typed as one or two code points gives one dedupe key.
  const email = trimmed.normalize("NFC").toLowerCase();

  const at = email.indexOf("@");
  if (at === -1) return { ok: false, reason: "missing @" };
  if (email.indexOf("@", at + 1) !== -1) return { ok: false, reason: "more than one @" };
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (local === "") return { ok: false, reason: "missing local part" };
  if (domain === "") return { ok: false, reason: "missing domain" };
  if (email.length > MAX_ADDRESS_CHARS) {
    return {
      ok: false,
      reason: `address longer than ${MAX_ADDRESS_CHARS} characters (it has ${email.length})`,
    };
  }
  if (local.length > MAX_LOCAL_CHARS) {
    return {
      ok: false,
      reason: `local part longer than ${MAX_LOCAL_CHARS} characters (it has ${local.length})`,
    };
  }

  if (local.startsWith('"')) return { ok: false, reason: "quoted local parts are not supported" };
  const badLocal = LOCAL_BAD_CHAR.exec(local);
  if (badLocal)
    return { ok: false, reason: `invalid character in local part: ${JSON.stringify(badLocal[0])}` };
  if (local.startsWith(".") || local.endsWith(".")) {
    return { ok: false, reason: "local part cannot start or end with a dot" };
  }
  if (local.includes("..")) return { ok: false, reason: "local part has two dots in a row" };

  const labels = domain.split(".");
  for (const label of labels) {
    const reason = labelProblem(label);
    if (reason !== undefined) return { ok: false, reason };
  }
  if (labels.length < 2) return { ok: false, reason: `domain needs a dot, like ${domain}.com` };
  const tld = labels[labels.length - 1] ?? "";
  // Rejects bare IP addresses too: we only send to domains with MX/A records.
  if (/^\p{N}+$/u.test(tld)) {
    return { ok: false, reason: `invalid domain label: the last label "${tld}" cannot be all digits` };
  }
  return { ok: true, email };
}

function labelProblem(label: string): string | undefined {
  if (label === "") {
    return 'invalid domain label: empty (look for ".." or a dot at the start or end of the domain)';
  }
  const bad = LABEL_BAD_CHAR.exec(label);
  if (bad) return `invalid domain label: "${label}" contains ${JSON.stringify(bad[0])}`;
  if (label.startsWith("-") || label.endsWith("-")) {
    return `invalid domain label: "${label}" cannot start or end with "-"`;
  }
  if (label.length > MAX_LABEL_CHARS) {
    return `invalid domain label: longer than ${MAX_LABEL_CHARS} characters (it has ${label.length})`;
  }
  return undefined;
}

export function parsePasted(text: string): ParseItem[] {
  const items: ParseItem[] = [];
  const lines = stripBom(text).split(/\r\n|\n|\r/);
  lines.forEach((line, index) => {
    const item = parseLine(line, index + 1);
    if (item !== undefined) items.push(item);
  });
  return items;
}

/**
 * Accepts what the API's `recipients` field may hold: a pasted string, or an array of strings
 * (each one pasted line) or of objects `{ email, ...fields }`.
 */
export function parseJsonRecipients(value: unknown): ParseItem[] {
  if (typeof value === "string") return parsePasted(value);
  if (!Array.isArray(value)) {
    throw new Error(`recipients must be a string or an array, got ${describeType(value)}`);
  }
  return value.map((item: unknown, index) => parseJsonItem(item, index + 1));
}

function parseJsonItem(item: unknown, line: number): ParseItem {
  if (typeof item === "string") {
    const value = item.trim();
    // A JSON array has no layout to keep, so an empty or comment item is a mistake, not spacing.
    if (value === "") return reject(line, item, "empty");
    return parseLine(item, line) ?? reject(line, item, "a comment, not an address");
  }
  if (typeof item !== "object" || item === null || Array.isArray(item)) {
    return reject(
      line,
      JSON.stringify(item) ?? String(item),
      `expected an address string or an object with an "email" field, got ${describeType(item)}`,
    );
  }

  const shown = JSON.stringify(item);
  let email: unknown;
  let hasEmail = false;
  const fields: [string, string][] = [];
  for (const [key, fieldValue] of Object.entries(item)) {
    const name = key.trim().toLowerCase();
    if (name === "email") {
      hasEmail = true;
      email = fieldValue;
      continue;
    }
    // Spreadsheet-to-JSON converters write null for an empty cell; it carries no value.
    if (fieldValue === null || fieldValue === undefined) continue;
    if (typeof fieldValue === "string") fields.push([name, fieldValue]);
    else if (typeof fieldValue === "number" || typeof fieldValue === "boolean") {
      fields.push([name, String(fieldValue)]);
    } else {
      return reject(
        line,
        shown,
        `field ${JSON.stringify(key)} must be a string, number or boolean, got ${describeType(fieldValue)}`,
      );
    }
  }
  if (!hasEmail) return reject(line, shown, 'missing "email" field');
  if (typeof email !== "string") {
    return reject(line, shown, `"email" must be a string, got ${describeType(email)}`);
  }
  const checked = validateEmail(email);
  if (!checked.ok) return reject(line, shown, checked.reason);
  // fromEntries defines own properties, so a "__proto__" key stays a field instead of a prototype.
  return accept(line, checked.email, Object.fromEntries(fields));
}

/**
 * Parses one pasted or TXT line; `undefined` for a blank line or a `#` comment, which are skipped
 * without a rejection but still count for line numbers.
 */
function parseLine(line: string, lineNumber: number): ParseItem | undefined {
  const trimmed = line.trim();
  if (trimmed === "" || trimmed.startsWith("#")) return undefined;

  if (trimmed.includes("<") || trimmed.includes(">")) {
    const match = /^([^<>]*)<([^<>]*)>(.*)$/s.exec(trimmed);
    if (!match) {
      const reason = !trimmed.includes(">")
        ? 'missing ">" after the address: expected Name <email>'
        : !trimmed.includes("<")
          ? 'missing "<" before the address: expected Name <email>'
          : "more than one <…> on the line: put one recipient per line";
      return reject(lineNumber, trimmed, reason);
    }
    const [, rawName = "", rawEmail = "", after = ""] = match;
    if (after.includes("<") || after.includes(">")) {
      return reject(lineNumber, trimmed, "more than one <…> on the line: put one recipient per line");
    }
    if (after.trim() !== "") {
      return reject(
        lineNumber,
        trimmed,
        'unexpected text after ">": expected Name <email> alone on the line',
      );
    }
    const checked = validateEmail(rawEmail);
    if (!checked.ok) return reject(lineNumber, trimmed, checked.reason);
    return accept(lineNumber, checked.email, nameFields(unquote(rawName.trim())));
  }

  const delimiter = /[,;\t]/.exec(trimmed);
  if (delimiter) {
    const rawEmail = unquote(trimmed.slice(0, delimiter.index).trim());
    const rest = trimmed.slice(delimiter.index + 1).trim();
    const checked = validateEmail(rawEmail);
    const firstOfRest = unquote(rest.split(/[,;\t]/)[0]?.trim() ?? "");
    const restIsAddress = validateEmail(firstOfRest).ok;
    if (!checked.ok) {
      const reason = restIsAddress ? "the address must come first: expected email,name" : checked.reason;
      return reject(lineNumber, trimmed, reason);
    }
    if (restIsAddress) {
      return reject(lineNumber, trimmed, "two addresses on one line: put one recipient per line");
    }
    return accept(lineNumber, checked.email, nameFields(unquote(rest)));
  }

  const checked = validateEmail(unquote(trimmed));
  if (!checked.ok) {
    const reason = checked.reason.startsWith("whitespace")
      ? `${checked.reason}: to give a name, write "Name <email>" or "email,name"`
      : checked.reason;
    return reject(lineNumber, trimmed, reason);
  }
  return accept(lineNumber, checked.email, {});
}

/**
 * Streams an uploaded file. CSV when the name ends in `.csv` or the first non-blank line looks like
 * a header with an `email` cell; otherwise one recipient per line like `parsePasted`. Line numbers
 * are the file's physical lines (a CSV header is line 1).
 */
export async function* parseUpload(
  input: NodeJS.ReadableStream | Readable,
  filename: string,
): AsyncGenerator<ParseItem> {
  const chunks = decodeText(input);
  const { head, firstLine } = await sniffFirstLine(chunks);
  const source = Readable.from(replay(head, chunks), { objectMode: false });
  try {
    const headerDelimiter = findHeaderDelimiter(firstLine);
    if (filename.toLowerCase().endsWith(".csv") || headerDelimiter !== undefined) {
      yield* parseCsvStream(source, headerDelimiter ?? likeliestDelimiter(firstLine));
    } else {
      yield* parseLineStream(source);
    }
  } finally {
    // The rest of the upload is not wanted when the consumer stops early or the header is wrong;
    // destroying it at once lets the HTTP request finish instead of waiting for a full read.
    source.destroy();
    if (input instanceof Readable) input.destroy();
  }
}

async function* parseLineStream(source: Readable): AsyncGenerator<ParseItem> {
  const lines = createInterface({ input: source, crlfDelay: Infinity });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      const item = parseLine(line, lineNumber);
      if (item !== undefined) yield item;
    }
  } finally {
    lines.close();
  }
}

type CsvRow = { record: string[]; raw: string; info: { lines: number } };

async function* parseCsvStream(source: Readable, delimiter: string): AsyncGenerator<ParseItem> {
  const parser = parseCsv({
    delimiter,
    info: true,
    raw: true,
    // Ragged rows become rejections with their line, instead of failing the whole file.
    relax_column_count: true,
    relax_quotes: true,
    skip_empty_lines: true,
    max_record_size: MAX_CSV_RECORD_CHARS,
  });
  pipeline(source, parser, () => {
    // Nothing to do: a read or parse error destroys the parser, and its iterator below throws it.
  });

  let header: string[] | undefined;
  let emailColumn = -1;
  try {
    for await (const row of parser as AsyncIterable<CsvRow>) {
      const { record } = row;
      // info.lines is the line the record ends on; a quoted field may have spanned several.
      const line = row.info.lines - record.reduce((sum, cell) => sum + countNewlines(cell), 0);
      // A row of empty cells is what spreadsheets export for blank rows.
      if (record.every((cell) => cell.trim() === "")) continue;

      if (header === undefined) {
        header = record.map((cell) => cell.trim().toLowerCase());
        emailColumn = checkHeader(header);
        continue;
      }

      const value = row.raw.trim();
      if (record.length !== header.length) {
        const hint =
          record.length > header.length ? `: quote values that contain ${describeDelimiter(delimiter)}` : "";
        yield reject(line, value, `expected ${header.length} columns, found ${record.length}${hint}`);
        continue;
      }
      const checked = validateEmail(record[emailColumn] ?? "");
      if (!checked.ok) {
        yield reject(line, value, checked.reason);
        continue;
      }
      const fields: [string, string][] = [];
      header.forEach((column, index) => {
        if (index !== emailColumn && column !== "") fields.push([column, (record[index] ?? "").trim()]);
      });
      yield accept(line, checked.email, Object.fromEntries(fields));
    }
  } catch (error) {
    if (error instanceof CsvError)
      throw new Error(`CSV could not be read: ${error.message}`, { cause: error });
    throw error;
  } finally {
    parser.destroy();
  }
}

function checkHeader(header: string[]): number {
  const found = header.filter((column) => column !== "");
  const emailColumn = header.indexOf("email");
  if (emailColumn === -1) {
    throw new Error(`CSV header has no "email" column (found: ${found.join(", ")})`);
  }
  // Two columns with one name would silently lose one of them in the recipient's fields.
  const repeated = found.find((column, index) => found.indexOf(column) !== index);
  if (repeated !== undefined) {
    throw new Error(
      `CSV header names the column "${repeated}" more than once; give each column its own name`,
    );
  }
  return emailColumn;
}

/** The delimiter that makes the line a header with an `email` cell, if any does. */
function findHeaderDelimiter(line: string): string | undefined {
  return DELIMITERS.find((delimiter) =>
    line.split(delimiter).some((cell) => unquote(cell.trim()).trim().toLowerCase() === "email"),
  );
}

function likeliestDelimiter(line: string): string {
  let best = ",";
  let bestCount = 0;
  for (const delimiter of DELIMITERS) {
    const count = line.split(delimiter).length - 1;
    if (count > bestCount) [best, bestCount] = [delimiter, count];
  }
  return best;
}

/**
 * Decodes the upload as UTF-8 text without a BOM and with every line break as "\n": csv-parse
 * counts a CRLF inside a quoted field as two lines, which would shift every later line number.
 */
async function* decodeText(input: NodeJS.ReadableStream | Readable): AsyncGenerator<string> {
  const decoder = new StringDecoder("utf8");
  let atStart = true;
  let pendingCr = false;
  const chunks: AsyncIterable<unknown> = input;
  for await (const chunk of chunks) {
    let text: string;
    if (typeof chunk === "string") text = chunk;
    else if (chunk instanceof Uint8Array) text = decoder.write(chunk);
    else throw new TypeError(`upload stream must yield text or bytes, got ${describeType(chunk)}`);

    if (atStart && text !== "") {
      text = stripBom(text);
      atStart = false;
    }
    if (pendingCr) text = `\r${text}`;
    // A CR at the end of a chunk may be the first half of a CRLF split across chunks.
    pendingCr = text.endsWith("\r");
    if (pendingCr) text = text.slice(0, -1);
    text = text.replace(/\r\n?/g, "\n");
    if (text !== "") yield text;
  }
  const rest = decoder.end() + (pendingCr ? "\n" : "");
  if (rest !== "") yield rest;
}

/** Reads just enough of the upload to see its first non-blank line, keeping what it read. */
async function sniffFirstLine(chunks: AsyncIterator<string>): Promise<{ head: string[]; firstLine: string }> {
  const head: string[] = [];
  let buffered = "";
  for (;;) {
    const lines = buffered.split("\n");
    const complete = lines.slice(0, -1).find((line) => line.trim() !== "");
    if (complete !== undefined) return { head, firstLine: complete };
    if (buffered.length > MAX_SNIFF_CHARS)
      return { head, firstLine: lines.find((l) => l.trim() !== "") ?? "" };
    const next = await chunks.next();
    if (next.done === true) return { head, firstLine: lines.find((l) => l.trim() !== "") ?? "" };
    head.push(next.value);
    buffered += next.value;
  }
}

async function* replay(head: string[], rest: AsyncGenerator<string>): AsyncGenerator<string> {
  yield* head;
  yield* rest;
}

function accept(line: number, email: string, fields: Record<string, string>): ParseItem {
  return { ok: true, recipient: { line, email, fields } };
}

function reject(line: number, value: string, reason: string): ParseItem {
  return { ok: false, rejected: { line, value: capValue(value.trim()), reason } };
}

function capValue(value: string): string {
  if (value.length <= MAX_VALUE_CHARS) return value;
  const cut = value.slice(0, MAX_VALUE_CHARS);
  // Do not end on half of a surrogate pair, which would not survive JSON encoding intact.
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

function nameFields(name: string): Record<string, string> {
  return name === "" ? {} : { name };
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    return value.slice(1, -1).replace(/\\(.)|""/g, (_pair, escaped?: string) => escaped ?? '"');
  }
  return value;
}

function stripBom(text: string): string {
  return text.startsWith("\uFEFF") ? text.slice(1) : text;
}

function countNewlines(text: string): number {
  let count = 0;
  for (let index = text.indexOf("\n"); index !== -1; index = text.indexOf("\n", index + 1)) count += 1;
  return count;
}

function describeDelimiter(delimiter: string): string {
  return delimiter === "\t" ? "a tab" : `"${delimiter}"`;
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return typeof value;
}
