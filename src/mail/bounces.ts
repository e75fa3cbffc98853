/**
 * Bounces and complaints: what a delivery status notification (RFC 3464), a feedback-loop
 * complaint (RFC 5965, ARF), an SES notification or a relay's own report says, matched to the
 * recipient it is about, and applied (a hard bounce or a complaint suppresses the address at
 * once; soft bounces after a limit).
 *
 * Matching, most precise first: the VERP token of the envelope recipient the report came to
 * (`bounces+{token}@…`), the X-Lovage-Recipient of the original message's headers it quotes,
 * the original Message-ID, then the address alone (its most recent sent recipient).
 *
 * Never: throws on a malformed report (it is logged and dropped: a bounce mailbox receives
 * anything), or trusts a token it did not make.
 */
import type { FeedbackKind, FeedbackTarget } from "../db/feedback.js";
import type { SuppressionReason } from "../db/suppressions.js";
import { validateEmail } from "./recipients/parse.js";
import type { Tokens } from "./tokens.js";

export interface FeedbackStore {
  findTarget(by: {
    recipientId?: number;
    messageId?: string;
    email?: string;
  }): Promise<FeedbackTarget | undefined>;
  record(
    target: FeedbackTarget,
    report: { kind: FeedbackKind; diagnostic: string; source: string },
    softLimit: number,
  ): Promise<{ status: string; suppressed: boolean }>;
  /** For a report that matches no recipient: the address alone goes on the list. */
  suppress(email: string, reason: SuppressionReason, detail: string): Promise<void>;
  /** A mailto: unsubscribe request: the recipient's address goes on the list as `unsubscribed`. */
  unsubscribe(recipientId: number): Promise<{ email: string } | undefined>;
}

/**
 * The recipient a mailto: unsubscribe request (LOVAGE_UNSUBSCRIBE_MAILTO) names: its Subject is
 * `unsubscribe {token}`, as List-Unsubscribe's mailto: sets it.
 */
export function unsubscribeRequestOf(raw: Buffer, tokens: Tokens): number | undefined {
  const text = raw.toString("latin1").replace(/\r\n/g, "\n");
  const head = text
    .slice(0, text.indexOf("\n\n") < 0 ? text.length : text.indexOf("\n\n"))
    .replace(/\n[ \t]+/g, " ");
  const subject = /^Subject:[ \t]*(.*)$/im.exec(head)?.[1]?.trim();
  const token = /^unsubscribe\s+([a-z2-7]{26})$/i.exec(subject ?? "")?.[1];
  return token === undefined ? undefined : tokens.read("unsubscribe", token);
}

/** One recipient's part of a report. */
export interface FeedbackReport {
  kind: FeedbackKind;
  /** The address the report is about (lowercased dedupe key), when it says. */
  email?: string | undefined;
  recipientId?: number | undefined;
  messageId?: string | undefined;
  diagnostic: string;
  source: string;
}

export interface FeedbackResult {
  kind: FeedbackKind;
  recipientId: number | null;
  status: string | null;
  suppressed: boolean;
}

export interface FeedbackSettings {
  tokens: Tokens;
  /** LOVAGE_SOFT_BOUNCE_LIMIT. */
  softBounceLimit: number;
  /** LOVAGE_BOUNCE_ADDRESS, for reading VERP tokens back. */
  bounceAddress?: string | undefined;
}

/** The envelope sender of a recipient's message: LOVAGE_BOUNCE_ADDRESS with `{token}` filled in. */
export function bounceAddressFor(template: string, token: string): string {
  return template.replace("{token}", token);
}

/** The recipient id in a VERP address made from `template`, if it is one. */
export function recipientFromVerp(template: string, address: string, tokens: Tokens): number | undefined {
  if (!template.includes("{token}")) return undefined;
  const [before, after] = template.toLowerCase().split("{token}") as [string, string];
  const lower = address.toLowerCase();
  if (!lower.startsWith(before) || !lower.endsWith(after)) return undefined;
  return tokens.read("recipient", lower.slice(before.length, lower.length - after.length));
}

export async function applyFeedback(
  store: FeedbackStore,
  settings: FeedbackSettings,
  report: FeedbackReport,
): Promise<FeedbackResult> {
  const target =
    (report.recipientId !== undefined
      ? await store.findTarget({ recipientId: report.recipientId })
      : undefined) ??
    (report.messageId !== undefined ? await store.findTarget({ messageId: report.messageId }) : undefined) ??
    (report.email !== undefined ? await store.findTarget({ email: report.email }) : undefined);
  if (!target) {
    if (report.email !== undefined && report.kind !== "soft") {
      await store.suppress(
        report.email,
        report.kind === "complaint" ? "complained" : "bounced",
        report.diagnostic,
      );
      return { kind: report.kind, recipientId: null, status: null, suppressed: true };
    }
    return { kind: report.kind, recipientId: null, status: null, suppressed: false };
  }
  const done = await store.record(target, report, settings.softBounceLimit);
  return { kind: report.kind, recipientId: target.recipientId, ...done };
}

/** `Name: value` fields of a report part, with its blank-line separated groups (RFC 3464 §2.1). */
function fieldGroups(text: string): Map<string, string>[] {
  return text
    .replace(/\r\n/g, "\n")
    .replace(/\n[ \t]+/g, " ")
    .split(/\n\s*\n/)
    .map((group) => {
      const fields = new Map<string, string>();
      for (const line of group.split("\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      return fields;
    })
    .filter((fields) => fields.size > 0);
}

/** `rfc822; Ann@Example.com` → `ann@example.com`. */
function addressField(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const address = value.includes(";") ? value.slice(value.indexOf(";") + 1).trim() : value.trim();
  const checked = validateEmail(address.replace(/^<|>$/g, ""));
  return checked.ok ? checked.email : undefined;
}

/** The X-Lovage-Recipient and Message-ID of the original message a report quotes. */
function originalIds(
  headersText: string | undefined,
  tokens: Tokens,
): { recipientId?: number; messageId?: string } {
  if (headersText === undefined) return {};
  const head = headersText
    .replace(/\r\n/g, "\n")
    .split(/\n\n/, 1)[0]!
    .replace(/\n[ \t]+/g, " ");
  const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.+)$`, "im").exec(head)?.[1]?.trim();
  const token = field("X-Lovage-Recipient");
  const recipientId = token !== undefined ? tokens.read("recipient", token) : undefined;
  const messageId = field("Message-ID");
  return {
    ...(recipientId !== undefined ? { recipientId } : {}),
    ...(messageId !== undefined ? { messageId } : {}),
  };
}

/**
 * The reports in one received message (a DSN may cover several recipients); empty when it is
 * neither a DSN nor an ARF report. `envelopeTo` is where it was delivered (a VERP address).
 */
interface MimePart {
  contentType: string;
  body: string;
}

/** Splits a header block from its body, unfolding the headers; `undefined` without a blank line. */
function splitEntity(text: string): { headers: string; body: string } | undefined {
  const normalized = text.replace(/\r\n/g, "\n");
  const end = normalized.indexOf("\n\n");
  if (end < 0) return undefined;
  return { headers: normalized.slice(0, end).replace(/\n[ \t]+/g, " "), body: normalized.slice(end + 2) };
}

function headerOf(headers: string, name: string): string | undefined {
  return new RegExp(`^${name}:[ \\t]*(.*)$`, "im").exec(headers)?.[1]?.trim();
}

/** The parts of a multipart/report, searched to one level of nesting. */
function reportParts(text: string, depth = 0): MimePart[] {
  const entity = splitEntity(text);
  if (!entity) return [];
  const contentType = headerOf(entity.headers, "Content-Type") ?? "";
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!/^multipart\//i.test(contentType) || boundary === undefined || depth > 1) return [];
  const pieces = entity.body.split(
    new RegExp(`^--${boundary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?:--)?[ \t]*$`, "m"),
  );
  const parts: MimePart[] = [];
  for (const piece of pieces.slice(1, -1)) {
    const part = splitEntity(piece.replace(/^\n/, ""));
    if (!part) continue;
    const type = (headerOf(part.headers, "Content-Type") ?? "text/plain").split(";")[0]!.trim().toLowerCase();
    const encoding = headerOf(part.headers, "Content-Transfer-Encoding")?.toLowerCase();
    const body =
      encoding === "base64"
        ? Buffer.from(part.body.replace(/\s+/g, ""), "base64").toString("latin1")
        : encoding === "quoted-printable"
          ? part.body
              .replace(/=\n/g, "")
              .replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
          : part.body;
    if (/^multipart\/report$/i.test(type) && depth === 0) {
      parts.push(...reportParts(`${part.headers}\n\n${body}`, depth + 1));
    } else {
      parts.push({ contentType: type, body });
    }
  }
  const isReport = /^multipart\/report/i.test(contentType);
  return isReport || parts.some((p) => p.contentType.startsWith("message/")) ? parts : [];
}

export async function parseReportMessage(
  raw: Buffer,
  envelopeTo: readonly string[],
  settings: FeedbackSettings,
): Promise<FeedbackReport[]> {
  // mailparser folds message/delivery-status into the text body, so the report's parts are
  // split here: the parts of a multipart/report (or of one nested in a multipart/mixed).
  const parts = reportParts(raw.toString("latin1"));
  const partOf = (...types: string[]) => {
    const part = parts.find((p) => types.includes(p.contentType));
    if (part === undefined) return undefined;
    // A quoted original may be encoded; its headers are what matters, so decode simply.
    return Buffer.from(part.body, "latin1").toString("utf8");
  };
  const original = partOf("message/rfc822", "text/rfc822-headers", "message/rfc822-headers");
  const ids = originalIds(original, settings.tokens);
  const verpId = settings.bounceAddress
    ? envelopeTo
        .map((to) => recipientFromVerp(settings.bounceAddress!, to, settings.tokens))
        .find((id) => id !== undefined)
    : undefined;
  const recipientId = verpId ?? ids.recipientId;

  const feedback = partOf("message/feedback-report");
  if (feedback !== undefined) {
    const [fields] = fieldGroups(feedback);
    const type = fields?.get("feedback-type")?.toLowerCase();
    if (!fields || type === undefined) return [];
    // Only abuse (spam) reports suppress; "not-spam", "virus" and the like are not complaints.
    if (type !== "abuse" && type !== "fraud") return [];
    const email =
      addressField(fields.get("original-rcpt-to")) ?? addressField(fields.get("removal-recipient"));
    return [
      {
        kind: "complaint",
        email,
        recipientId,
        messageId: ids.messageId,
        diagnostic: `complaint (${type})${fields.get("user-agent") ? ` via ${fields.get("user-agent")}` : ""}`,
        source: "bounce-smtp",
      },
    ];
  }

  const status = partOf("message/delivery-status", "message/global-delivery-status");
  if (status === undefined) return [];
  const groups = fieldGroups(status);
  const reports: FeedbackReport[] = [];
  // The first group is about the message; each one after it about a recipient.
  for (const fields of groups.slice(1)) {
    const action = fields.get("action")?.toLowerCase();
    const code = /^([245])\.\d{1,3}\.\d{1,3}/.exec(fields.get("status") ?? "")?.[0];
    if (
      action === undefined ||
      code === undefined ||
      action === "delivered" ||
      action === "relayed" ||
      action === "expanded"
    )
      continue;
    const kind: FeedbackKind = action === "failed" && code.startsWith("5") ? "hard" : "soft";
    const diagnostic = fields.get("diagnostic-code")?.replace(/^smtp;\s*/i, "") ?? `${action} ${code}`;
    reports.push({
      kind,
      email: addressField(fields.get("final-recipient")) ?? addressField(fields.get("original-recipient")),
      // A DSN for one recipient (the usual case with VERP) names it by the envelope too.
      recipientId: groups.length === 2 ? recipientId : undefined,
      messageId: groups.length === 2 ? ids.messageId : undefined,
      diagnostic: `${code} ${diagnostic}`.slice(0, 1000),
      source: "bounce-smtp",
    });
  }
  return reports;
}
