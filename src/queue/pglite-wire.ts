/**
 * The few pieces of the PostgreSQL wire protocol (v3) that the PGlite owner thread reads or
 * writes itself: message framing, the text of a Query or Parse message, the channel of a
 * notification, and the handful of replies it answers without PostgreSQL (ReadyForQuery,
 * CommandComplete, ErrorResponse). Everything else passes through as bytes: node-postgres
 * writes the requests and parses the replies, as it does over a socket.
 *
 * Every message but the startup packet is one type byte and a big-endian int32 length that
 * counts itself and the body.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const PROTOCOL_V3 = 196608;
export const SSL_REQUEST = 80877103;
export const CANCEL_REQUEST = 80877102;
export const GSSENC_REQUEST = 80877104;

/** One message in a buffer: its type letter and where its bytes start and end. */
export interface Frame {
  type: string;
  start: number;
  end: number;
}

function int32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0);
}

/**
 * The complete messages at the start of `bytes`, and how many bytes they take (a message cut
 * off at the end is left for the next call).
 */
export function frames(bytes: Uint8Array): { frames: Frame[]; used: number } {
  const found: Frame[] = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const end = at + 1 + int32(bytes, at + 1);
    if (end > bytes.length) break;
    found.push({ type: String.fromCharCode(bytes[at]!), start: at, end });
    at = end;
  }
  return { frames: found, used: at };
}

/** The length and request code of a startup packet (or SSL/cancel request), if complete. */
export function startupHeader(bytes: Uint8Array): { length: number; code: number } | undefined {
  if (bytes.length < 8) return undefined;
  const length = int32(bytes, 0);
  return length <= bytes.length ? { length, code: int32(bytes, 4) } : undefined;
}

function cstring(bytes: Uint8Array, from: number): { text: string; next: number } {
  const zero = bytes.indexOf(0, from);
  const end = zero < 0 ? bytes.length : zero;
  return { text: decoder.decode(bytes.subarray(from, end)), next: end + 1 };
}

/** The SQL of a Query ('Q') or Parse ('P') message. */
export function sqlOf(bytes: Uint8Array, frame: Frame): string {
  const body = frame.start + 5;
  if (frame.type === "Q") return cstring(bytes, body).text;
  const name = cstring(bytes, body);
  return cstring(bytes, name.next).text;
}

/** The SQLSTATE of an ErrorResponse ('E': fields of a type byte and a string, then 0). */
export function errorCode(bytes: Uint8Array, frame: Frame): string | undefined {
  let at = frame.start + 5;
  while (at < frame.end && bytes[at] !== 0) {
    const type = bytes[at]!;
    const field = cstring(bytes, at + 1);
    if (type === 0x43) return field.text;
    at = field.next;
  }
  return undefined;
}

/** The channel of a NotificationResponse ('A': pid, channel, payload). */
export function notificationChannel(bytes: Uint8Array, frame: Frame): string {
  return cstring(bytes, frame.start + 9).text;
}

function message(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

function cstrings(...parts: string[]): Uint8Array {
  return encoder.encode(parts.map((part) => `${part}\0`).join(""));
}

/** A simple-protocol Query. */
export function queryMessage(sql: string): Uint8Array {
  return message("Q", cstrings(sql));
}

/** Sync: ends an extended query; the reply is ReadyForQuery. */
export const SYNC_MESSAGE = message("S", new Uint8Array(0));

/** ReadyForQuery with its transaction status: I (idle), T (in a transaction), E (failed one). */
export function readyForQuery(status: TransactionStatus): Uint8Array {
  return message("Z", encoder.encode(status));
}

export function commandComplete(tag: string): Uint8Array {
  return message("C", cstrings(tag));
}

/** An ErrorResponse as PostgreSQL sends one: node-postgres turns it into a DatabaseError. */
export function errorResponse(code: string, text: string): Uint8Array {
  const fields = cstrings(`SERROR`, `VERROR`, `C${code}`, `M${text}`);
  const body = new Uint8Array(fields.length + 1);
  body.set(fields);
  return message("E", body);
}

export function startupPacket(params: Record<string, string>): Uint8Array {
  const pairs = Object.entries(params).flatMap(([key, value]) => [key, value]);
  const body = cstrings(...pairs);
  const out = new Uint8Array(8 + body.length + 1);
  const view = new DataView(out.buffer);
  view.setInt32(0, out.length);
  view.setInt32(4, PROTOCOL_V3);
  out.set(body, 8);
  return out;
}

export type TransactionStatus = "I" | "T" | "E";

/** The status of the last ReadyForQuery in a reply, or undefined if it has none. */
export function lastStatus(bytes: Uint8Array, found: Frame[]): TransactionStatus | undefined {
  for (let i = found.length - 1; i >= 0; i--) {
    const frame = found[i]!;
    if (frame.type === "Z") return String.fromCharCode(bytes[frame.start + 5]!) as TransactionStatus;
  }
  return undefined;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * `LISTEN channel` or `UNLISTEN channel|*` alone (after `--` comments, which BullMQ's SQL has),
 * with the channel as PostgreSQL names it (unquoted names fold to lower case).
 */
export function listenStatement(sql: string): { verb: "LISTEN" | "UNLISTEN"; channel: string } | undefined {
  const match =
    /^\s*(?:--[^\n]*\n\s*)*(LISTEN|UNLISTEN)\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\*)\s*;?\s*$/i.exec(
      sql,
    );
  if (!match?.[1] || !match[2]) return undefined;
  const raw = match[2];
  const channel = raw.startsWith('"') ? raw.slice(1, -1).replaceAll('""', '"') : raw.toLowerCase();
  return { verb: match[1].toUpperCase() as "LISTEN" | "UNLISTEN", channel };
}

/** A channel name as a quoted identifier, for a LISTEN the owner thread sends itself. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `COPY … FROM STDIN`: PGlite's single-user backend aborts on it (WebAssembly exit(1)). */
export function isCopyFromStdin(sql: string): boolean {
  return /^\s*(?:--[^\n]*\n\s*)*COPY\b[\s\S]*\bFROM\s+STDIN\b/i.test(sql);
}
