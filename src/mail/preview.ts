/**
 * A campaign's message before it is sent: rendered for one recipient (headers and both parts,
 * as the MIME text nodemailer writes), or sent once to a test address through the real
 * transport with the server's answer. Neither stores anything: the campaign need not exist.
 *
 * Never: signs the preview (DKIM is added by the transport, at send time), or lets a test send
 * touch the suppression list or the email log.
 */
import { randomBytes } from "node:crypto";
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import type { CampaignRow, NewCampaign } from "../db/campaigns.js";
import {
  buildMessage,
  compileMessage,
  parseMailbox,
  toNodemailerMessage,
  type MessageSettings,
  type OutgoingMessage,
} from "./message.js";
import type { SendOptions, SendResult } from "./transport-pool.js";

/** The recipient a preview or test send renders for. */
export interface SampleRecipient {
  /** `Name <address>` or an address. */
  to: string;
  /** Placeholder values beyond `name` and `email`. */
  fields?: Record<string, string> | undefined;
}

export interface Preview {
  headers: { name: string; value: string }[];
  subject: string;
  text: string | null;
  html: string | null;
  /** The message as it would go on the wire (before the transport's DKIM signature). */
  raw: string;
}

export class InvalidSampleError extends Error {
  constructor(readonly reason: string) {
    super(`to: ${reason}`);
    this.name = "InvalidSampleError";
  }
}

/** A row that is never stored: id 0 matches no recipient, so its tokens unsubscribe no one. */
function sampleRow(campaign: NewCampaign): CampaignRow {
  return {
    ...campaign,
    id: 0,
    status: "draft",
    statusReason: null,
    total: 1,
    createdAt: new Date(),
    startedAt: null,
    completedAt: null,
  };
}

export function sampleMessage(
  campaign: NewCampaign,
  sample: SampleRecipient,
  settings: MessageSettings,
): OutgoingMessage {
  const to = parseMailbox(sample.to);
  if (!to.ok) throw new InvalidSampleError(`"${sample.to}" is not a valid address: ${to.reason}`);
  const compiled = compileMessage(sampleRow(campaign));
  const message = buildMessage(
    compiled,
    {
      id: 0,
      campaignId: 0,
      address: to.mailbox.address,
      fields: { ...sample.fields, ...(to.mailbox.name !== "" ? { name: to.mailbox.name } : {}) },
    },
    settings,
  );
  // Its own Message-ID each time: a receiver that drops repeated ids would hide a second test.
  return { ...message, messageId: `<test.${randomBytes(12).toString("hex")}@${compiled.idDomain}>` };
}

export async function previewMessage(
  campaign: NewCampaign,
  sample: SampleRecipient,
  settings: MessageSettings,
): Promise<Preview> {
  const message = sampleMessage(campaign, sample, settings);
  const raw = (await new MailComposer(toNodemailerMessage(message)).compile().build()).toString("utf8");
  const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
  const headers = head
    .replace(/\r\n[ \t]+/g, " ")
    .split("\r\n")
    .map((line) => {
      const colon = line.indexOf(":");
      return { name: line.slice(0, colon), value: line.slice(colon + 1).trim() };
    });
  return {
    headers,
    subject: message.subject,
    text: message.text ?? null,
    html: message.html ?? null,
    raw,
  };
}

/** What a test send needs of the transport. */
export interface TestTransport {
  send(message: OutgoingMessage, options?: SendOptions): Promise<SendResult>;
}

export async function testSend(
  campaign: NewCampaign,
  sample: SampleRecipient,
  settings: MessageSettings,
  transport: TestTransport,
): Promise<SendResult & { messageId: string }> {
  const message = sampleMessage(campaign, sample, settings);
  // Through the campaign's own servers, so that the test shows what its recipients will get.
  const options = campaign.servers ? { servers: campaign.servers } : undefined;
  return { ...(await transport.send(message, options)), messageId: message.messageId };
}
