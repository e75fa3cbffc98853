/**
 * The bounce listener: an SMTP server (LOVAGE_BOUNCE_SMTP_PORT, off by default) that a mail
 * server forwards bounce mail to: delivery status notifications sent to LOVAGE_BOUNCE_ADDRESS,
 * feedback-loop complaint reports, and the mailto: unsubscribe requests of List-Unsubscribe
 * (LOVAGE_UNSUBSCRIBE_MAILTO). Each message is parsed (mail/bounces.ts) and applied.
 *
 * Never: relays anything, or refuses a message for what it holds: a malformed or unmatched
 * report is logged and dropped with a 250, so the forwarding server does not queue it for
 * retries (a 4xx is answered only when the store is down: then a retry is what is wanted).
 */
import type { Socket } from "node:net";
import { SMTPServer, type SMTPServerDataStream } from "smtp-server";
import {
  applyFeedback,
  parseReportMessage,
  unsubscribeRequestOf,
  type FeedbackSettings,
  type FeedbackStore,
} from "./bounces.js";

export interface BounceListener {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Larger reports are refused (552): a DSN quotes headers or a short message, not attachments. */
export const BOUNCE_MAX_BYTES = 5 * 1024 * 1024;

export async function openBounceListener(options: {
  store: FeedbackStore;
  settings: FeedbackSettings;
  port: number;
  host: string;
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}): Promise<BounceListener> {
  const { store, settings, logger } = options;
  const sockets = new Set<Socket>();

  async function receive(stream: SMTPServerDataStream, envelopeTo: string[]): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    if (stream.sizeExceeded) return;
    const unsubscribing = unsubscribeRequestOf(Buffer.concat(chunks), settings.tokens);
    if (unsubscribing !== undefined) {
      const done = await store.unsubscribe(unsubscribing);
      logger.info(
        { recipientId: unsubscribing, found: done !== undefined },
        "bounce listener: unsubscribe request",
      );
      return;
    }
    let reports;
    try {
      reports = await parseReportMessage(Buffer.concat(chunks), envelopeTo, settings);
    } catch (error) {
      logger.warn(
        { err: (error as Error).message, envelopeTo },
        "bounce listener: unreadable message dropped",
      );
      return;
    }
    if (reports.length === 0) {
      logger.warn({ envelopeTo }, "bounce listener: not a delivery status or feedback report; dropped");
      return;
    }
    for (const report of reports) {
      const result = await applyFeedback(store, settings, report);
      logger.info({ ...result, diagnostic: report.diagnostic }, "bounce listener: report applied");
    }
  }

  const server = new SMTPServer({
    disabledCommands: ["STARTTLS", "AUTH"],
    authOptional: true,
    size: BOUNCE_MAX_BYTES,
    logger: false,
    disableReverseLookup: true,
    onData(stream, session, callback) {
      receive(
        stream,
        session.envelope.rcptTo.map((r) => r.address),
      ).then(
        () =>
          stream.sizeExceeded
            ? callback(Object.assign(new Error("report too large"), { responseCode: 552 }))
            : callback(),
        (error: unknown) => {
          logger.warn({ err: (error as Error).message }, "bounce listener: could not record a report; 451");
          callback(
            Object.assign(new Error("cannot record the report now, try again later"), { responseCode: 451 }),
          );
        },
      );
    },
  });
  server.on("error", (error) => logger.warn({ err: error.message }, "bounce listener: connection error"));
  server.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((ready, fail) => {
    server.server.once("error", fail);
    server.listen(options.port, options.host, () => {
      server.server.off("error", fail);
      ready();
    });
  });
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  return {
    url: `smtp://${options.host}:${port}`,
    port,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
