/**
 * The built-in mail catcher: a real SMTP server on the loopback interface that accepts every
 * message, parses it and hands it to a store, so a campaign can be sent end to end without a
 * real mail provider (like MailHog or Mailpit).
 *
 * It owns the SMTP listener and the translation of one received message into a
 * `CaughtMessage`. It never relays or delivers anything, never answers 250 for a message the
 * store has not saved, and never touches the database itself: the store is whatever the
 * caller wires in.
 */
import type { Socket } from "node:net";
import { simpleParser, type AddressObject, type EmailAddress, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";
import type { CaughtMessage } from "../db/caught-messages.js";

export type { CaughtMessage };

export interface CaughtMessageStore {
  saveCaughtMessage(message: CaughtMessage): Promise<void>;
}

export interface MailCatcher {
  host: string;
  port: number;
  /** `smtp://127.0.0.1:PORT` */
  url: string;
  close(): Promise<void>;
}

export interface MailCatcherLogger {
  warn(obj: object, msg: string): void;
}

/** 25 MiB, the largest message the catcher accepts; larger ones get 552. */
export const catcherMaxMessageBytes = 25 * 1024 * 1024;

type SmtpError = Error & { responseCode: number };

function smtpError(responseCode: number, message: string): SmtpError {
  return Object.assign(new Error(message), { responseCode });
}

export async function openMailCatcher(options: {
  store: CaughtMessageStore;
  /** 0 (the default) picks any free port. */
  port?: number;
  /** @defaultValue "127.0.0.1" */
  host?: string;
  logger?: MailCatcherLogger;
}): Promise<MailCatcher> {
  const { store, logger } = options;
  const host = options.host ?? "127.0.0.1";
  const sockets = new Set<Socket>();

  const server = new SMTPServer({
    // Loopback only: there is no one to hide the session from, and STARTTLS would make every
    // client negotiate TLS with smtp-server's published test certificate for nothing.
    disabledCommands: ["STARTTLS"],
    authOptional: true,
    // An app configured with SMTP credentials can point at the catcher unchanged.
    allowInsecureAuth: true,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username ?? "anonymous" });
    },
    size: catcherMaxMessageBytes,
    logger: false,
    disableReverseLookup: true,
    onData(stream, session, callback) {
      receive(stream, session).then(
        () => callback(),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    },
  });

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      // Keep reading an oversized message to its end (smtp-server answers 552 then), but stop
      // holding it: a runaway client must not grow the process past the limit.
      if (!stream.sizeExceeded) chunks.push(chunk);
    }
    if (stream.sizeExceeded) throw smtpError(552, "Message exceeds the catcher's size limit");
    const raw = Buffer.concat(chunks);

    let parsed: ParsedMail;
    try {
      parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true });
    } catch (cause) {
      logger?.warn({ err: cause, sizeBytes: raw.length }, "mail catcher could not parse a message");
      // The same bytes would fail again, so a retry cannot help: refuse it for good.
      throw smtpError(554, "Message could not be parsed");
    }

    const message = toCaughtMessage(parsed, session, raw.length);
    try {
      await store.saveCaughtMessage(message);
    } catch (cause) {
      logger?.warn(
        { err: cause, messageId: message.messageId, envelopeTo: message.envelopeTo },
        "mail catcher could not save a message; answered 451 so the sender retries",
      );
      // 451 (temporary) rather than 250: a 250 would make the sender record the message as
      // delivered while the catcher has lost it; a 4xx keeps it with the sender, who retries.
      throw smtpError(451, "Could not store the message, try again later");
    }
  }

  server.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    // Until it listens, an error is the listen's own (the port is in use): the caller names the
    // setting; logging it here too would print a stack trace before that one line.
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // Connection errors (a client resetting its socket) are the client's problem; without a
  // listener an 'error' event would crash the process.
  server.on("error", (err) => logger?.warn({ err }, "mail catcher connection error"));
  const address = server.server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`mail catcher: expected a TCP address after listening, got ${String(address)}`);
  }
  const port = address.port;

  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `smtp://${host}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // smtp-server would otherwise wait up to 30 s for open sessions to finish on their own.
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

function formatAddress(entry: EmailAddress): string[] {
  if (entry.group) return entry.group.flatMap(formatAddress);
  if (!entry.address) return [];
  return [entry.name ? `${entry.name} <${entry.address}>` : entry.address];
}

function addressesOf(value: AddressObject | AddressObject[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).flatMap((object) => object.value.flatMap(formatAddress));
}

function isAddressObject(value: unknown): value is AddressObject {
  return typeof value === "object" && value !== null && "value" in value && "text" in value;
}

/**
 * Decoded header values where mailparser has them as text (encoded words turned into UTF-8),
 * the original line for the rest (dates, content types, lists), so nothing is reformatted.
 */
function headersOf(parsed: ParsedMail): Record<string, string> {
  const rawByKey = new Map<string, string[]>();
  for (const { key, line } of parsed.headerLines) {
    const colon = line.indexOf(":");
    const value = line
      .slice(colon + 1)
      .replace(/\r?\n[ \t]+/g, " ")
      .trim();
    const values = rawByKey.get(key);
    if (values) values.push(value);
    else rawByKey.set(key, [value]);
  }
  const headers: Record<string, string> = {};
  for (const [key, raw] of rawByKey) {
    const value = parsed.headers.get(key);
    if (typeof value === "string") headers[key] = value;
    else if (Array.isArray(value) && value.every((v) => typeof v === "string"))
      headers[key] = value.join("\n");
    else if (isAddressObject(value)) headers[key] = value.text;
    else headers[key] = raw.join("\n");
  }
  return headers;
}

function toCaughtMessage(parsed: ParsedMail, session: SMTPServerSession, sizeBytes: number): CaughtMessage {
  const { mailFrom, rcptTo } = session.envelope;
  return {
    receivedAt: new Date(),
    envelopeFrom: mailFrom ? mailFrom.address : "",
    envelopeTo: rcptTo.map((rcpt) => rcpt.address),
    messageId: parsed.messageId ?? null,
    subject: parsed.subject ?? "",
    from: parsed.from?.text ?? "",
    to: addressesOf(parsed.to),
    text: parsed.text ?? "",
    html: typeof parsed.html === "string" ? parsed.html : null,
    headers: headersOf(parsed),
    sizeBytes,
  };
}
