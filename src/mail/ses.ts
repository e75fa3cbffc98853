/**
 * Amazon SES bounce and complaint notifications, delivered by SNS to `POST /api/webhooks/ses`.
 * A message is taken only if its SNS signature verifies against the signing certificate SNS
 * names (fetched from an `https://sns.<region>.amazonaws.com/….pem` address only, and kept), or,
 * for a relay that cannot sign, when the URL carries the shared secret
 * (`?secret=` = LOVAGE_SES_WEBHOOK_SECRET). A subscription confirmation is confirmed by fetching
 * its SubscribeURL, after the same check.
 *
 * Never: fetches a certificate or a confirmation URL from any host but SNS's, or applies a
 * notification whose signature does not verify.
 */
import { timingSafeEqual, verify } from "node:crypto";
import type { FeedbackReport } from "./bounces.js";
import { validateEmail } from "./recipients/parse.js";
import type { Tokens } from "./tokens.js";

export interface SnsMessage {
  Type: string;
  MessageId: string;
  TopicArn: string;
  Subject?: string;
  Message: string;
  Timestamp: string;
  SignatureVersion?: string;
  Signature?: string;
  SigningCertURL?: string;
  SubscribeURL?: string;
  Token?: string;
}

export class SnsRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnsRefused";
  }
}

/** What the webhook needs to reach: SNS's certificate and confirmation addresses. */
export type SnsFetch = (url: string) => Promise<string>;

const SNS_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

function snsUrl(raw: string | undefined, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw ?? "");
  } catch {
    throw new SnsRefused(`${what} is not a URL`);
  }
  if (url.protocol !== "https:" || !SNS_HOST.test(url.hostname)) {
    throw new SnsRefused(`${what} is not an https://sns.<region>.amazonaws.com address`);
  }
  return url;
}

/** The text SNS signs (its documented field order), per message type. */
function signedText(message: SnsMessage): string {
  const keys =
    message.Type === "Notification"
      ? [
          "Message",
          "MessageId",
          ...(message.Subject !== undefined ? ["Subject"] : []),
          "Timestamp",
          "TopicArn",
          "Type",
        ]
      : ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"];
  const fields = message as unknown as Record<string, string | undefined>;
  return keys.map((key) => `${key}\n${fields[key] ?? ""}\n`).join("");
}

export function createSnsVerifier(fetchText: SnsFetch, sharedSecret: string | undefined) {
  const certificates = new Map<string, Promise<string>>();
  return {
    /** Throws SnsRefused unless the message is signed by SNS or the URL's secret matches. */
    async check(message: SnsMessage, secretInUrl: string | undefined): Promise<void> {
      if (sharedSecret !== undefined && secretInUrl !== undefined) {
        const given = Buffer.from(secretInUrl);
        const expected = Buffer.from(sharedSecret);
        if (given.length === expected.length && timingSafeEqual(given, expected)) return;
        throw new SnsRefused("the secret in the URL does not match LOVAGE_SES_WEBHOOK_SECRET");
      }
      if (message.Signature === undefined || message.SigningCertURL === undefined)
        throw new SnsRefused("unsigned SNS message (and no matching ?secret=)");
      const certUrl = snsUrl(message.SigningCertURL, "SigningCertURL");
      if (!certUrl.pathname.endsWith(".pem")) throw new SnsRefused("SigningCertURL is not a .pem file");
      let certificate = certificates.get(certUrl.href);
      if (!certificate) {
        certificate = fetchText(certUrl.href);
        certificates.set(certUrl.href, certificate);
        certificate.catch(() => certificates.delete(certUrl.href));
      }
      const algorithm = message.SignatureVersion === "2" ? "RSA-SHA256" : "RSA-SHA1";
      let ok = false;
      try {
        ok = verify(
          algorithm,
          Buffer.from(signedText(message)),
          await certificate,
          Buffer.from(message.Signature, "base64"),
        );
      } catch (error) {
        throw new SnsRefused(`the signature cannot be checked: ${(error as Error).message}`);
      }
      if (!ok) throw new SnsRefused("the SNS signature does not verify");
    },
    confirmUrl(message: SnsMessage): string {
      return snsUrl(message.SubscribeURL, "SubscribeURL").href;
    },
  };
}

interface SesNotification {
  notificationType?: string;
  eventType?: string;
  bounce?: {
    bounceType?: string;
    bouncedRecipients?: { emailAddress?: string; diagnosticCode?: string; status?: string }[];
  };
  complaint?: { complainedRecipients?: { emailAddress?: string }[]; complaintFeedbackType?: string };
  mail?: { headers?: { name?: string; value?: string }[]; commonHeaders?: { messageId?: string } };
}

/** The reports an SES notification holds (none for deliveries and other types). */
export function sesReports(messageText: string, tokens: Tokens): FeedbackReport[] {
  let notification: SesNotification;
  try {
    notification = JSON.parse(messageText) as SesNotification;
  } catch {
    throw new SnsRefused("the SNS Message is not an SES notification (not JSON)");
  }
  const type = notification.notificationType ?? notification.eventType;
  const header = (name: string) =>
    notification.mail?.headers?.find((h) => h.name?.toLowerCase() === name.toLowerCase())?.value;
  const token = header("X-Lovage-Recipient");
  const recipientId = token !== undefined ? tokens.read("recipient", token) : undefined;
  const messageId = header("Message-ID") ?? notification.mail?.commonHeaders?.messageId;
  const address = (raw: string | undefined) => {
    const checked = validateEmail(/<([^>]+)>/.exec(raw ?? "")?.[1] ?? raw ?? "");
    return checked.ok ? checked.email : undefined;
  };
  const one = (count: number) => (count === 1 ? { recipientId, messageId } : {});
  if (type === "Bounce") {
    const recipients = notification.bounce?.bouncedRecipients ?? [];
    const kind = notification.bounce?.bounceType === "Permanent" ? "hard" : "soft";
    return recipients.map((r) => ({
      kind,
      email: address(r.emailAddress),
      ...one(recipients.length),
      diagnostic: `SES ${notification.bounce?.bounceType ?? "bounce"}: ${r.diagnosticCode ?? r.status ?? "no diagnostic"}`,
      source: "ses",
    }));
  }
  if (type === "Complaint") {
    const recipients = notification.complaint?.complainedRecipients ?? [];
    return recipients.map((r) => ({
      kind: "complaint" as const,
      email: address(r.emailAddress),
      ...one(recipients.length),
      diagnostic: `SES complaint${notification.complaint?.complaintFeedbackType ? ` (${notification.complaint.complaintFeedbackType})` : ""}`,
      source: "ses",
    }));
  }
  return [];
}
