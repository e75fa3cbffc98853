/**
 * How Lovage connects to one SMTP server: its TLS mode as nodemailer's options, the CA that
 * verifies the server's certificate, the EHLO name, and the DKIM key every message is signed
 * with. The pool (transport-pool.ts) adds its own options (connections, timeouts) on top.
 *
 * Owns: the mapping of `tls=opportunistic|required|none|implicit` (smtp-server-url.ts) to
 * nodemailer's `secure`/`requireTLS`/`ignoreTLS`, and that certificates are always verified.
 * Never: turns certificate verification off, or falls back to plain text once STARTTLS was
 * offered and failed (nodemailer's `opportunisticTLS` would, and it is never set here).
 */
import { hostname } from "node:os";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import type { SmtpServerSpec } from "./smtp-server-url.js";

/**
 * The headers a signature covers: nodemailer's default list (RFC 6376 §5.4's) plus
 * List-Unsubscribe-Post, which RFC 8058 §4 requires to be signed with List-Unsubscribe, and
 * Lovage's ids (so a bounce's X-Lovage-Recipient is one Lovage's key vouched for).
 */
export const DKIM_SIGNED_HEADERS = [
  "From",
  "Sender",
  "Reply-To",
  "Subject",
  "Date",
  "Message-ID",
  "To",
  "Cc",
  "MIME-Version",
  "Content-Type",
  "Content-Transfer-Encoding",
  "Content-ID",
  "Content-Description",
  "Resent-Date",
  "Resent-From",
  "Resent-Sender",
  "Resent-To",
  "Resent-Cc",
  "Resent-Message-ID",
  "In-Reply-To",
  "References",
  "List-Id",
  "List-Help",
  "List-Unsubscribe",
  "List-Unsubscribe-Post",
  "List-Subscribe",
  "List-Post",
  "List-Owner",
  "List-Archive",
  "Feedback-ID",
  "X-Lovage-Campaign",
  "X-Lovage-Recipient",
].join(":");

/** DKIM signing with nodemailer's own signer (relaxed/relaxed, rsa-sha256 or ed25519-sha256). */
export interface DkimSettings {
  /** `LOVAGE_DKIM_DOMAIN`: the `d=` of the signature; it should be the From domain for DMARC. */
  domainName: string;
  /** `LOVAGE_DKIM_SELECTOR`: the `s=`; the public key is at `{selector}._domainkey.{domain}`. */
  keySelector: string;
  /** The PEM private key read from `LOVAGE_DKIM_KEY_FILE`. */
  privateKey: string;
}

/** What every connection to every server shares; main reads the files and passes their text. */
export interface SmtpConnectionSettings {
  /** `LOVAGE_SMTP_CA_FILE`'s PEM certificates; undefined: the system's (Node's) trusted CAs. */
  ca?: string | undefined;
  /** `LOVAGE_SMTP_EHLO_NAME`, or its default (see ehloNameOf). */
  ehloName?: string | undefined;
  dkim?: DkimSettings | undefined;
}

/**
 * The EHLO name: `LOVAGE_SMTP_EHLO_NAME`, else the host name of `LOVAGE_PUBLIC_URL`, else the
 * machine's host name when it is fully qualified (has a dot). Undefined leaves nodemailer's
 * own choice (the machine's name, or `[127.0.0.1]`), which many relays score as a spam sign.
 */
export function ehloNameOf(
  settings: { ehloName: string | undefined; publicUrl: string | undefined },
  machineName = hostname(),
): string | undefined {
  if (settings.ehloName !== undefined) return settings.ehloName;
  if (settings.publicUrl !== undefined) {
    const host = new URL(settings.publicUrl).hostname;
    // An IP literal is no name a receiver can check; nodemailer's bracketed default is better.
    if (host.includes(".") && !/^[\d.]+$/.test(host) && !host.startsWith("[")) return host;
  }
  return machineName.includes(".") ? machineName : undefined;
}

/** nodemailer's connection options for one server (no pool or timeout options). */
export function smtpConnectionOptions(
  spec: SmtpServerSpec,
  settings: SmtpConnectionSettings = {},
): SMTPPool.Options {
  const tlsMode: Pick<SMTPPool.Options, "secure" | "requireTLS" | "ignoreTLS"> =
    spec.tls === "implicit"
      ? { secure: true }
      : spec.tls === "required"
        ? { secure: false, requireTLS: true }
        : spec.tls === "none"
          ? { secure: false, ignoreTLS: true }
          : // Opportunistic: nodemailer issues STARTTLS whenever EHLO offers it, and fails the
            // transaction (temporary) rather than go on in clear if the upgrade fails.
            { secure: false };
  return {
    host: spec.host,
    port: spec.port,
    ...tlsMode,
    auth: spec.auth ? { user: spec.auth.user, pass: spec.auth.pass } : undefined,
    ...(settings.ehloName !== undefined ? { name: settings.ehloName } : {}),
    tls: {
      // Verification on, whatever the mode: a relay that cannot prove who it is gets no password.
      rejectUnauthorized: true,
      ...(settings.ca !== undefined ? { ca: settings.ca } : {}),
      // SNI and the name checked against the certificate (an IP host gets no SNI, by RFC 6066).
      ...(/^[\d.]+$|:/.test(spec.host) ? {} : { servername: spec.host }),
    },
    ...(settings.dkim
      ? {
          dkim: {
            domainName: settings.dkim.domainName,
            keySelector: settings.dkim.keySelector,
            privateKey: settings.dkim.privateKey,
            headerFieldNames: DKIM_SIGNED_HEADERS,
          },
        }
      : {}),
  };
}
