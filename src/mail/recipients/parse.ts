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
 * `Rejected` items so every problem is reported at once; only input that cannot be read as a
 * whole throws: a CSV without an email column, an empty file or list, a header-only CSV, bytes
 * that are not UTF-8 or UTF-16 with a BOM, a NUL).
 */
import { createInterface } from "node:readline";
import { Readable, pipeline } from "node:stream";
import { isUtf8 } from "node:buffer";
import { CsvError, parse as parseCsv } from "csv-parse";

export type Recipient = {
  line: number;
  email: string;
  /** The address as typed (local part's case kept), when it differs from `email`. */
  address?: string;
  fields: Record<string, string>;
};
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

/**
 * `email` is the dedupe key (lowercased: `Bob@x` and `bob@x` are one mailbox to every provider
 * in practice); `address` is what is sent, with the local part's case as typed (RFC 5321 §2.4:
 * only the receiving host may fold it) and the domain lowercased.
 */
export function validateEmail(
  raw: string,
): { ok: true; email: string; address: string } | { ok: false; reason: string } {
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
  const typed = trimmed.normalize("NFC");
  return { ok: true, email, address: `${typed.slice(0, at)}@${domain}` };
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
  if (typeof value === "string") {
    const items = parsePasted(value);
    // Without this, an empty list would be refused as "every line was rejected".
    if (items.length === 0) {
      throw new Error(
        value.trim() === ""
          ? "recipients is empty"
          : "recipients has no recipient: every line is blank or a # comment",
      );
    }
    return items;
  }
  if (!Array.isArray(value)) {
    throw new Error(`recipients must be a string or an array, got ${describeType(value)}`);
  }
  if (value.length === 0) throw new Error("recipients is an empty list");
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
  return accept(line, checked, Object.fromEntries(fields));
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
    return accept(lineNumber, checked, nameFields(unquote(rawName.trim())));
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
    return accept(lineNumber, checked, nameFields(unquote(rest)));
  }

  const checked = validateEmail(unquote(trimmed));
  if (!checked.ok) {
    const reason = checked.reason.startsWith("whitespace")
      ? `${checked.reason}: to give a name, write "Name <email>" or "email,name"`
      : checked.reason;
    return reject(lineNumber, trimmed, reason);
  }
  return accept(lineNumber, checked, {});
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
    // Without this, an empty upload would be refused as "every line was rejected".
    if (head.length === 0) throw new Error("the file is empty");
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
  let recipientLines = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      const item = parseLine(line, lineNumber);
      if (item === undefined) continue;
      recipientLines += 1;
      yield item;
    }
    if (recipientLines === 0) {
      throw new Error(`the file has no recipients: its ${lineNumber} lines are blank or # comments`);
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
  let rows = 0;
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

      rows += 1;
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
      yield accept(line, checked, Object.fromEntries(fields));
    }
    if (header === undefined) throw new Error("the file has no recipients: every line is blank");
    if (rows === 0) throw new Error("the CSV has a header row but no recipients");
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
 * Decodes the upload to text without a BOM and with every line break as "\n": csv-parse counts a
 * CRLF inside a quoted field as two lines, which would shift every later line number.
 *
 * UTF-8 (with or without its BOM) and UTF-16 with a BOM are read; anything else stops the upload
 * at the first byte that is not text, naming its line and offset, because a file decoded with
 * replacement characters would be stored with "�" in every name it touched. A NUL stops it too:
 * PostgreSQL cannot store one, and it is what a UTF-16 file without a BOM or a binary file holds.
 */
export async function* decodeText(input: NodeJS.ReadableStream | Readable): AsyncGenerator<string> {
  const chunks: AsyncIterable<unknown> = input;
  const breaks = new LineBreaks();
  let decoder: ByteDecoder | undefined;
  let head = Buffer.alloc(0);
  let atStart = true;
  for await (const chunk of chunks) {
    let text: string;
    if (typeof chunk === "string") {
      text = atStart ? stripBom(chunk) : chunk;
      const nul = text.indexOf("\0");
      if (nul !== -1) throw new UnreadableTextError(breaks.lineAfter(text.slice(0, nul)), nulMessage());
    } else if (chunk instanceof Uint8Array) {
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (decoder === undefined) {
        // A BOM takes up to 3 bytes, and a chunk may be as short as one byte.
        head = Buffer.concat([head, bytes]);
        if (head.length < 3) continue;
        decoder = byteDecoderFor(head);
        text = decoder.decode(head, breaks);
      } else text = decoder.decode(bytes, breaks);
    } else throw new TypeError(`upload stream must yield text or bytes, got ${describeType(chunk)}`);
    if (text !== "") atStart = false;
    text = breaks.normalize(text);
    if (text !== "") yield text;
  }
  let tail = "";
  if (decoder === undefined && head.length > 0) {
    decoder = byteDecoderFor(head);
    tail = decoder.decode(head, breaks);
  }
  tail += decoder?.end(breaks) ?? "";
  const rest = breaks.normalize(tail) + breaks.end();
  if (rest !== "") yield rest;
}

/** Counts lines as the text goes by, so that a decoding error can name its line. */
class LineBreaks {
  /** Line breaks seen so far; the next character is on line `count + 1`. */
  count = 0;
  private pendingCr = false;

  /** The text with CRLF and CR as "\n"; a CR at the end waits for the next chunk's LF. */
  normalize(raw: string): string {
    let text = this.pendingCr ? `\r${raw}` : raw;
    this.pendingCr = text.endsWith("\r");
    if (this.pendingCr) text = text.slice(0, -1);
    text = text.replace(/\r\n?/g, "\n");
    this.count += countNewlines(text);
    return text;
  }

  /** The line of a character that follows `before` (text not yet normalized). */
  lineAfter(before: string): number {
    const text = (this.pendingCr ? `\r${before}` : before).replace(/\r\n?/g, "\n");
    return this.count + countNewlines(text) + 1;
  }

  end(): string {
    const rest = this.pendingCr ? "\n" : "";
    this.pendingCr = false;
    return rest;
  }
}

interface ByteDecoder {
  /** The text of the bytes; throws an UnreadableTextError naming the line and byte that are not text. */
  decode(bytes: Buffer, breaks: LineBreaks): string;
  /** What is left at the end of the upload. */
  end(breaks: LineBreaks): string;
}

/** A line of an upload that cannot be read as text; the message says what to do. */
export class UnreadableTextError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
    this.name = "UnreadableTextError";
  }
}

function nulMessage(offset?: number): string {
  const where = offset === undefined ? "" : ` (at byte offset ${offset})`;
  return `a NUL byte${where} cannot be stored: is this a binary file, or UTF-16 without a byte order mark? Save the file as UTF-8`;
}

function byteDecoderFor(head: Buffer): ByteDecoder {
  if (head[0] === 0xff && head[1] === 0xfe) return new Utf16Chunks(false);
  if (head[0] === 0xfe && head[1] === 0xff) return new Utf16Chunks(true);
  return new Utf8Chunks();
}

class Utf8Chunks implements ByteDecoder {
  /** Bytes of a character split across chunks. */
  private pending = Buffer.alloc(0);
  /** File offset of `pending[0]`. */
  private offset = 0;
  private atStart = true;

  decode(chunk: Buffer, breaks: LineBreaks): string {
    const bytes = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const complete = completeUtf8Length(bytes);
    const bad = isUtf8(bytes.subarray(0, complete)) ? -1 : invalidUtf8Index(bytes, 0, complete);
    const nul = bytes.subarray(0, bad === -1 ? complete : bad).indexOf(0);
    if (nul !== -1 || bad !== -1) {
      const at = nul !== -1 ? nul : bad;
      const line = breaks.lineAfter(this.text(bytes.subarray(0, at)));
      const where = `byte offset ${this.offset + at}`;
      if (nul !== -1) throw new UnreadableTextError(line, nulMessage(this.offset + at));
      throw new UnreadableTextError(
        line,
        `byte 0x${bytes[at]!.toString(16).toUpperCase().padStart(2, "0")} (at ${where}) is not UTF-8; save the file as UTF-8`,
      );
    }
    this.pending = Buffer.from(bytes.subarray(complete));
    const text = this.text(bytes.subarray(0, complete));
    this.offset += complete;
    return text;
  }

  end(breaks: LineBreaks): string {
    if (this.pending.length === 0) return "";
    throw new UnreadableTextError(
      breaks.lineAfter(""),
      `the file ends in the middle of a character (byte 0x${this.pending[0]!.toString(16).toUpperCase()} at byte offset ${this.offset}); save the file as UTF-8`,
    );
  }

  private text(bytes: Buffer): string {
    let text = bytes.toString("utf8");
    if (this.atStart && text !== "") {
      text = stripBom(text);
      this.atStart = false;
    }
    return text;
  }
}

class Utf16Chunks implements ByteDecoder {
  /** An odd byte, or a high surrogate waiting for its low half. */
  private pending = Buffer.alloc(0);
  /** File offset of `pending[0]`. */
  private offset = 0;
  private atStart = true;

  constructor(private readonly bigEndian: boolean) {}

  decode(chunk: Buffer, breaks: LineBreaks): string {
    const bytes = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    let end = bytes.length - (bytes.length % 2);
    const units = this.bigEndian ? Buffer.from(bytes.subarray(0, end)).swap16() : bytes.subarray(0, end);
    if (end >= 2) {
      const last = units.readUInt16LE(end - 2);
      if (last >= 0xd800 && last <= 0xdbff) end -= 2;
    }
    let text = units.toString("utf16le", 0, end);
    const bad = unstorableChar(text);
    if (bad !== undefined) {
      const line = breaks.lineAfter(text.slice(0, bad.index));
      throw new UnreadableTextError(
        line,
        bad.char === "\0"
          ? nulMessage(this.offset + 2 * bad.index)
          : `the UTF-16 text has an unpaired surrogate at byte offset ${this.offset + 2 * bad.index}; save the file as UTF-8`,
      );
    }
    this.pending = Buffer.from(bytes.subarray(end));
    this.offset += end;
    if (this.atStart && text !== "") {
      text = stripBom(text);
      this.atStart = false;
    }
    return text;
  }

  end(breaks: LineBreaks): string {
    if (this.pending.length === 0) return "";
    throw new UnreadableTextError(
      breaks.lineAfter(""),
      `the file ends in the middle of a UTF-16 character (at byte offset ${this.offset}); save the file as UTF-8`,
    );
  }
}

// NUL, and a UTF-16 surrogate without its other half (JSON's "\ud800" makes one).
const UNSTORABLE_CHAR = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The first character of `text` that PostgreSQL cannot store in a UTF-8 database: a NUL, or a
 * lone surrogate (which no UTF-8 encoding exists for; drivers would silently store "�").
 */
export function unstorableChar(text: string): { index: number; char: string; reason: string } | undefined {
  const match = UNSTORABLE_CHAR.exec(text);
  if (!match) return undefined;
  const char = match[0];
  const code = `U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  return {
    index: match.index,
    char,
    reason:
      char === "\0"
        ? `contains a NUL character (${code}), which cannot be stored`
        : `contains an unpaired surrogate (${code}), which is not Unicode text`,
  };
}

/** How many bytes from the start form whole characters: a character cut by the chunk's end waits. */
function completeUtf8Length(bytes: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back += 1) {
    const byte = bytes[bytes.length - back]!;
    if (byte < 0x80) return bytes.length;
    if (byte >= 0xc0) {
      const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      return length > back ? bytes.length - back : bytes.length;
    }
  }
  return bytes.length;
}

/**
 * The index of the first byte in `bytes[start, end)` that does not begin or continue a well-formed
 * UTF-8 character (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or -1.
 */
export function invalidUtf8Index(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let index = start;
  while (index < end) {
    const lead = bytes[index]!;
    if (lead < 0x80) {
      index += 1;
      continue;
    }
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return index;
    if (index + length > end) return index;
    const second = bytes[index + 1]!;
    if (second < low || second > high) return index;
    for (let next = 2; next < length; next += 1) {
      const byte = bytes[index + next]!;
      if (byte < 0x80 || byte > 0xbf) return index;
    }
    index += length;
  }
  return -1;
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

function accept(
  line: number,
  checked: { email: string; address: string },
  fields: Record<string, string>,
): ParseItem {
  const recipient: Recipient = { line, email: checked.email, fields };
  if (checked.address !== checked.email) recipient.address = checked.address;
  return { ok: true, recipient };
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
