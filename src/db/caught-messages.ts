/** The mail catcher's messages, newest first. */
import type { Selectable } from "kysely";
import type { Db } from "./recipients.js";
import type { CaughtMessagesTable } from "./schema.js";

/** A message as the mail catcher received it. */
export interface CaughtMessage {
  receivedAt: Date;
  envelopeFrom: string;
  envelopeTo: string[];
  messageId: string | null;
  subject: string;
  /** The From header as displayed, e.g. `"Lan Nguyễn" <lan@example.com>`. */
  from: string;
  /** The To header, one `Name <address>` or `address` per mailbox. */
  to: string[];
  text: string;
  html: string | null;
  /** Header names in lower case; a repeated header's values are joined by "\n". */
  headers: Record<string, string>;
  sizeBytes: number;
}

export async function saveCaughtMessage(db: Db, message: CaughtMessage): Promise<void> {
  await db
    .insertInto("lovage.caught_messages")
    .values({
      received_at: message.receivedAt,
      envelope_from: message.envelopeFrom,
      envelope_to: JSON.stringify(message.envelopeTo),
      message_id: message.messageId,
      subject: message.subject,
      from_header: message.from,
      to_header: JSON.stringify(message.to),
      text_body: message.text,
      html_body: message.html,
      headers: JSON.stringify(message.headers),
      size_bytes: message.sizeBytes,
    })
    .execute();
}

const SUMMARY = ["id", "received_at", "from_header", "to_header", "subject", "message_id"] as const;

function summary(row: Pick<Selectable<CaughtMessagesTable>, (typeof SUMMARY)[number]>) {
  return {
    id: row.id,
    receivedAt: row.received_at.toISOString(),
    from: row.from_header,
    to: row.to_header,
    subject: row.subject,
    messageId: row.message_id,
  };
}

export async function listCaughtMessages(db: Db, limit: number) {
  const rows = await db
    .selectFrom("lovage.caught_messages")
    .select(SUMMARY)
    .orderBy("id", "desc")
    .limit(limit)
    .execute();
  return rows.map(summary);
}

export async function getCaughtMessage(db: Db, id: number) {
  const row = await db
    .selectFrom("lovage.caught_messages")
    .selectAll()
    .where("id", "=", id)
    .executeTakeFirst();
  return row && { ...summary(row), text: row.text_body, html: row.html_body, headers: row.headers };
}
