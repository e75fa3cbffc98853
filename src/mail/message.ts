/**
 * One recipient's message as it goes on the wire: sender, Reply-To and recipient as
 * `{name, address}` objects (so nodemailer quotes or encodes any display name exactly, and never
 * reads `Tin tức: Ánh Dương <…>` as an RFC 5322 group), the body parts (a text part made from
 * the HTML when the campaign has none), the Message-ID, the X-Lovage-* ids, List-Unsubscribe,
 * and the campaign's own extra headers.
 *
 * Owns: the mailbox syntax a campaign's `from`/`replyTo` may use, the list of headers a campaign
 * may set, and how a message is derived from a campaign and a recipient. Never: sends, touches
 * the store, or lets a CR or LF from any field start a header of its own.
 */
import { domainToASCII } from "node:url";
import { convert as htmlToText } from "html-to-text";
import type Mail from "nodemailer/lib/mailer/index.js";
import type { CampaignRow } from "../db/campaigns.js";
import { validateEmail } from "./recipients/parse.js";
import { compileTemplate, type Template } from "./render.js";
import type { Tokens } from "./tokens.js";

export interface Mailbox {
  /** The display name, as it should read; "" for none. */
  name: string;
  address: string;
}

export interface OutgoingMessage {
  from: Mailbox;
  to: Mailbox;
  replyTo?: Mailbox | undefined;
  /** MAIL FROM and RCPT TO; default: the From and To addresses. */
  envelope?: { from: string; to: string } | undefined;
  subject: string;
  text?: string | undefined;
  html?: string | undefined;
  messageId: string;
  /** Extra headers in order; every value is one line. */
  headers?: readonly (readonly [name: string, value: string])[] | undefined;
}

/** What a recipient row gives a message. */
export interface MessageRecipient {
  id: number;
  campaignId: number;
  address: string;
  fields: Record<string, string>;
}

/** Settings every message of a deployment shares. */
export interface MessageSettings {
  tokens: Tokens;
  /** `LOVAGE_PUBLIC_URL`, no trailing slash: unsubscribe links go under it; undefined: none. */
  publicUrl?: string | undefined;
  /** `LOVAGE_UNSUBSCRIBE_MAILTO`: a mailto: in List-Unsubscribe beside the link. */
  unsubscribeMailto?: string | undefined;
  /** `LOVAGE_BOUNCE_ADDRESS`: the envelope sender (MAIL FROM); `{token}` in it becomes the recipient's (VERP). */
  bounceAddress?: string | undefined;
}

/** The one-click unsubscribe link of a recipient (RFC 8058), when there is a public URL. */
export function unsubscribeUrlOf(settings: MessageSettings, recipientId: number): string | undefined {
  if (settings.publicUrl === undefined) return undefined;
  return `${settings.publicUrl}/u/${settings.tokens.make("unsubscribe", recipientId)}`;
}

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Reads `Name <address>`, `"Quoted, Name" <address>` or a bare address. The name is everything
 * before the last `<`, so `:`, `;`, `,` and `(…)` in it are kept as typed; outer double quotes
 * are removed (with their backslash escapes). The address keeps the case of its local part.
 */
export function parseMailbox(raw: string): { ok: true; mailbox: Mailbox } | { ok: false; reason: string } {
  const text = raw.trim();
  if (CONTROL.test(text)) return { ok: false, reason: "contains a line break or control character" };
  const angle = /^(.*)<([^<>]*)>$/s.exec(text);
  let name = "";
  let address = text;
  if (angle) {
    name = angle[1]!.trim();
    address = angle[2]!.trim();
    if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) {
      name = name.slice(1, -1).replace(/\\(.)/g, "$1");
    }
  } else if (/[<>]/.test(text)) {
    return { ok: false, reason: 'expected an address or "Name <address>"' };
  }
  const checked = validateEmail(address);
  if (!checked.ok) return { ok: false, reason: checked.reason };
  return { ok: true, mailbox: { name, address: checked.address } };
}

/** A mailbox as a user would write it again (parseMailbox reads it back the same). */
export function formatMailbox(mailbox: Mailbox): string {
  if (mailbox.name === "") return mailbox.address;
  return `"${mailbox.name.replace(/(["\\])/g, "\\$1")}" <${mailbox.address}>`;
}

/**
 * Headers a campaign may add. Everything that identifies, routes or structures the message
 * (From, To, Subject, Message-ID, Date, MIME-*, Content-*, Received, DKIM, List-Unsubscribe,
 * X-Lovage-*) is Lovage's own and cannot be set.
 */
const SETTABLE_HEADERS = new Set(
  [
    "List-Id",
    "List-Help",
    "List-Owner",
    "List-Subscribe",
    "List-Post",
    "List-Archive",
    "Precedence",
    "Auto-Submitted",
    "Feedback-ID",
    "Organization",
    "Keywords",
    "Comments",
    "Importance",
    "Priority",
  ].map((name) => name.toLowerCase()),
);
const HEADER_NAME = /^[!-9;-~]+$/;
export const HEADER_LIMITS = Object.freeze({ count: 50, valueChars: 900 });

/** Problems with a campaign's extra headers, each naming the header; empty when they are fine. */
export function headerProblems(headers: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const names = Object.keys(headers);
  if (names.length > HEADER_LIMITS.count) problems.push(`at most ${HEADER_LIMITS.count} headers`);
  const seen = new Set<string>();
  for (const name of names) {
    const value = headers[name];
    const key = name.toLowerCase();
    if (!HEADER_NAME.test(name)) {
      problems.push(`"${name}" is not a header name (printable ASCII without ":" or spaces)`);
      continue;
    }
    if (seen.has(key)) problems.push(`"${name}" is given twice`);
    seen.add(key);
    if (key.startsWith("x-lovage-") || !(SETTABLE_HEADERS.has(key) || key.startsWith("x-"))) {
      problems.push(
        `"${name}" cannot be set by a campaign (allowed: X-… other than X-Lovage-…, ${[...SETTABLE_HEADERS].join(", ")})`,
      );
      continue;
    }
    if (typeof value !== "string") problems.push(`"${name}" must be a string`);
    else if (CONTROL.test(value)) problems.push(`"${name}" contains a line break or control character`);
    else if (value.trim() === "") problems.push(`"${name}" is empty`);
    else if (value.length > HEADER_LIMITS.valueChars)
      problems.push(`"${name}" is longer than ${HEADER_LIMITS.valueChars} characters`);
  }
  return problems;
}

/** A campaign ready to render many messages: templates compiled and mailboxes parsed once. */
export interface CompiledMessage {
  campaign: CampaignRow;
  from: Mailbox;
  replyTo: Mailbox | undefined;
  subject: Template;
  text: Template | undefined;
  html: Template | undefined;
  /** The From domain as ASCII (punycode), for Message-IDs. */
  idDomain: string;
}

export function compileMessage(campaign: CampaignRow): CompiledMessage {
  const from = mailboxOrThrow(campaign.from, "from");
  return {
    campaign,
    from,
    replyTo: campaign.replyTo === null ? undefined : mailboxOrThrow(campaign.replyTo, "replyTo"),
    subject: compileTemplate(campaign.subject),
    text: campaign.text !== null ? compileTemplate(campaign.text) : undefined,
    html: campaign.html !== null ? compileTemplate(campaign.html) : undefined,
    idDomain: domainToASCII(from.address.slice(from.address.lastIndexOf("@") + 1)) || "lovage.invalid",
  };
}

function mailboxOrThrow(raw: string, field: string): Mailbox {
  const parsed = parseMailbox(raw);
  // Checked when the campaign was created; a row that fails now was written by something else.
  if (!parsed.ok) throw new Error(`campaign ${field} "${raw}" is not a mailbox: ${parsed.reason}`);
  return parsed.mailbox;
}

/** The text part made from an HTML body, for campaigns that give no text. */
export function textFromHtml(html: string): string {
  return htmlToText(html, {
    wordwrap: 76,
    selectors: [
      { selector: "img", format: "skip" },
      { selector: "a", options: { hideLinkHrefIfSameAsText: true } },
    ],
  });
}

/**
 * One recipient's message. Its Message-ID depends only on the recipient, so every attempt of it
 * carries the same one and a receiver can drop a doubled delivery.
 */
export function buildMessage(
  compiled: CompiledMessage,
  recipient: MessageRecipient,
  settings: MessageSettings,
): OutgoingMessage {
  const unsubscribeUrl = unsubscribeUrlOf(settings, recipient.id);
  const fields: Record<string, string> = {
    ...recipient.fields,
    email: recipient.address,
    unsubscribe_url: unsubscribeUrl ?? "",
  };
  const text = compiled.text?.render(fields);
  const html = compiled.html?.render(fields, { escapeHtml: true });
  const headers: [string, string][] = [
    ["X-Lovage-Campaign", settings.tokens.make("campaign", recipient.campaignId)],
    ["X-Lovage-Recipient", settings.tokens.make("recipient", recipient.id)],
  ];
  if (compiled.campaign.listUnsubscribe && unsubscribeUrl !== undefined) {
    const mailto = settings.unsubscribeMailto;
    const token = unsubscribeUrl.slice(unsubscribeUrl.lastIndexOf("/") + 1);
    headers.push([
      "List-Unsubscribe",
      mailto === undefined
        ? `<${unsubscribeUrl}>`
        : `<${unsubscribeUrl}>, <mailto:${mailto}?subject=unsubscribe%20${token}>`,
    ]);
    headers.push(["List-Unsubscribe-Post", "List-Unsubscribe=One-Click"]);
  }
  for (const [name, value] of Object.entries(compiled.campaign.headers)) headers.push([name, value]);
  return {
    from: compiled.from,
    to: { name: oneLine(fields.name ?? ""), address: recipient.address },
    replyTo: compiled.replyTo,
    envelope: {
      from:
        settings.bounceAddress === undefined
          ? compiled.from.address
          : settings.bounceAddress.replace("{token}", settings.tokens.make("recipient", recipient.id)),
      to: recipient.address,
    },
    subject: oneLine(compiled.subject.render(fields)),
    text: text ?? (html !== undefined ? textFromHtml(html) : undefined),
    html,
    messageId: `<${settings.tokens.make("messageId", recipient.id)}@${compiled.idDomain}>`,
    headers,
  };
}

/** A recipient's field as a header value: a line break from a CSV cell becomes a space. */
function oneLine(value: string): string {
  return value.replace(/[\r\n\u0000]+/g, " ");
}

/** nodemailer's form of a message. Addresses go as objects, so nothing is parsed again. */
export function toNodemailerMessage(message: OutgoingMessage): Mail.Options {
  const headers: Mail.Options["headers"] = (message.headers ?? []).map(([key, value]) => ({ key, value }));
  return {
    from: message.from,
    to: [message.to],
    ...(message.replyTo ? { replyTo: message.replyTo } : {}),
    envelope: {
      from: message.envelope?.from ?? message.from.address,
      to: [message.envelope?.to ?? message.to.address],
    },
    subject: message.subject,
    text: message.text,
    html: message.html,
    messageId: message.messageId,
    headers,
  };
}
