/**
 * Sending one message through a pool of SMTP connections (nodemailer's pooled transport, one
 * pool per server, servers taken in turn), and saying what the server's answer means for the
 * recipient. It never touches the store: the caller records the outcome.
 */
import nodemailer from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import { toNodemailerMessage, type OutgoingMessage } from "./message.js";
import { smtpConnectionOptions, type SmtpConnectionSettings } from "./smtp-connection-options.js";
import { parseSmtpServerUrl } from "./smtp-server-url.js";

export type { OutgoingMessage };

/**
 * - `temporary`: the server said 4xx, or the message was never handed over (refused
 *   connection, timeout before DATA): safe to try again.
 * - `permanent`: the server said 5xx: trying again would get the same answer.
 * - `ambiguous`: the link failed after the message was handed over and before the server's
 *   answer: it may have been delivered, so it must not be re-sent silently.
 */
export type SendFailureKind = "temporary" | "permanent" | "ambiguous";

export type SendResult =
  | { ok: true; response: string; server: string }
  | { ok: false; kind: SendFailureKind; code: number | null; error: string; server: string };

export interface Transport {
  /** SMTP transactions it can have in flight at once: its connections over every server. */
  readonly capacity: number;
  send(message: OutgoingMessage): Promise<SendResult>;
  /** Checks that every server answers; throws with the first that does not. */
  verify(): Promise<void>;
  close(): void;
}

interface SmtpError extends Error {
  code?: string;
  command?: string;
  responseCode?: number;
  response?: string;
  syscall?: string;
}

/** Failures that happen before an SMTP session exists: nothing can have been handed over. */
const NEVER_CONNECTED = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|Greeting never received/;

/** Certificate checks that fail during the TLS handshake (Node's codes for them). */
const CERTIFICATE_FAILURE =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|DEPTH_ZERO|wrong version number|handshake/i;

/** A TLS (STARTTLS or implicit) or greeting failure: the session never reached MAIL FROM. */
function beforeMailFrom(error: SmtpError & { originalCode?: string }): boolean {
  if (error.code === "ETLS" || error.command === "STARTTLS") return true;
  if (/Greeting never received|Invalid greeting/i.test(error.message)) return true;
  return error.command === "CONN" && CERTIFICATE_FAILURE.test(`${error.originalCode ?? ""} ${error.message}`);
}

/**
 * nodemailer reports a link lost at RCPT exactly as one lost after the message body (code
 * ECONNECTION, command CONN, no reply code), so a link lost mid-session must count as
 * `ambiguous`: retrying it could deliver the message twice.
 */
export function classifySmtpError(error: SmtpError): { kind: SendFailureKind; code: number | null } {
  const code = typeof error.responseCode === "number" ? error.responseCode : null;
  // Before MAIL FROM nothing of the message was handed over, whatever the server answered to
  // STARTTLS or in its greeting (a 5xx there says nothing about this recipient).
  if (beforeMailFrom(error)) return { kind: "temporary", code };
  if (code !== null && code >= 500) return { kind: "permanent", code };
  if (code !== null && code >= 400) return { kind: "temporary", code };
  if (error.syscall === "connect" || NEVER_CONNECTED.test(`${error.code ?? ""} ${error.message}`)) {
    return { kind: "temporary", code };
  }
  return { kind: "ambiguous", code };
}

function describe(error: SmtpError): string {
  // A TLS failure's reply alone ("500 command not recognized") would not say it was STARTTLS.
  const text = error.code === "ETLS" ? `TLS: ${error.message}` : (error.response ?? error.message);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

export function createSmtpTransport(
  urls: readonly string[],
  options: { poolSize: number; timeoutMs: number; connection?: SmtpConnectionSettings },
): Transport {
  if (urls.length === 0) throw new Error("at least one SMTP URL is needed");
  const servers = urls.map((url) => {
    const spec = parseSmtpServerUrl(url);
    const transport = nodemailer.createTransport({
      pool: true,
      ...smtpConnectionOptions(spec, options.connection),
      maxConnections: options.poolSize,
      maxMessages: Infinity,
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
    } as SMTPPool.Options);
    return { name: spec.name, transport };
  });
  let next = 0;

  return {
    capacity: options.poolSize * servers.length,
    async send(message) {
      const server = servers[next++ % servers.length]!;
      try {
        const info = (await server.transport.sendMail(toNodemailerMessage(message))) as {
          response?: string;
        };
        return { ok: true, response: info.response ?? "250", server: server.name };
      } catch (error) {
        const smtpError = error as SmtpError;
        return {
          ok: false,
          ...classifySmtpError(smtpError),
          error: describe(smtpError),
          server: server.name,
        };
      }
    },
    async verify() {
      for (const server of servers) {
        try {
          await server.transport.verify();
        } catch (error) {
          throw new Error(`SMTP server ${server.name} does not answer: ${(error as Error).message}`, {
            cause: error,
          });
        }
      }
    },
    close() {
      for (const server of servers) server.transport.close();
    },
  };
}
