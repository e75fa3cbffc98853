/**
 * A scriptable real SMTP server for tests and the benchmark: smtp-server on 127.0.0.1, a free
 * port, answering each recipient as a script says (accept, a 4xx/5xx code, a hang-up, a delay)
 * and counting what it accepted, so a test can assert requested = delivered with no duplicate.
 *
 * It owns its listener, its sockets and its timers, and closes all three in `close()`. It never
 * relays or stores anything outside this process, and never mocks the protocol: the client
 * under test talks real SMTP over TCP.
 */
import type { Socket } from "node:net";
import { simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";

/**
 * What the server answers: "accept" (250), an SMTP error code (a code below 400 accepts),
 * "hangup" (the socket is destroyed without a reply), or the same after `delayMs`.
 */
export type Reply =
  "accept" | { code: number; message?: string } | "hangup" | { delayMs: number; then?: Reply };

export interface ScriptContext {
  /** The address as given in RCPT TO. */
  recipient: string;
  /** 0-based count of MAIL FROM commands the server saw before this message's, any connection. */
  messageIndex: number;
  /** How many times this recipient (case-insensitive) was presented at this stage before. */
  attemptsFor: number;
}

export type Script = (ctx: ScriptContext) => Reply;

export interface ReceivedMessage {
  envelopeTo: string[];
  /** The MAIL FROM address. */
  from: string;
  subject: string;
  messageId: string | null;
  /** Empty unless `keepBodies`. */
  text: string;
  /** The message as received (dot-stuffing removed); empty unless `keepBodies`. */
  raw: string;
  /** Whether the session was over TLS (STARTTLS or implicit) when the message came. */
  secure: boolean;
  /** The name the client gave in EHLO/HELO. */
  clientHostname: string;
}

export interface TestSmtpServer {
  url: string;
  port: number;
  /** One entry per accepted message, in the order they were accepted. */
  received: ReceivedMessage[];
  /** The raw text of every message read to its end at DATA, accepted or not (with `keepBodies`). */
  dataSeen: string[];
  /** How many accepted messages were addressed (in the envelope) to this address. */
  deliveries(address: string): number;
  /** Addresses that were in the envelope of more than one accepted message. */
  duplicates(): string[];
  setScript(fn: Script): void;
  close(): Promise<void>;
}

export interface TestSmtpServerOptions {
  /** @defaultValue accept everything */
  script?: Script;
  /**
   * Where the scripted reply is given: "rcpt" answers each RCPT TO; "data" answers after the
   * whole message was read, with the reply of the first recipient whose reply is not "accept"
   * (the script is still called once per recipient, so `attemptsFor` counts every one).
   * @defaultValue "rcpt"
   */
  stage?: "rcpt" | "data";
  /** Keep `raw` and `text` of each accepted message. @defaultValue true */
  keepBodies?: boolean;
  /** The address to listen on (e.g. a test network namespace's own). @defaultValue "127.0.0.1" */
  host?: string;
  /** @defaultValue 0: a free port */
  port?: number;
  /**
   * A certificate and key (PEM): the server offers STARTTLS with them (or, with `implicit`,
   * speaks TLS from the first byte, as smtps://). @defaultValue no TLS: STARTTLS is not offered
   */
  tls?: { key: string; cert: string; implicit?: boolean };
}

type Outcome =
  { kind: "accept" } | { kind: "reject"; error: Error & { responseCode: number } } | { kind: "hangup" };

const accepted: Outcome = { kind: "accept" };
const hangup: Outcome = { kind: "hangup" };
const headerEnd = Buffer.from("\r\n\r\n");

export async function startTestSmtpServer(options: TestSmtpServerOptions = {}): Promise<TestSmtpServer> {
  const stage = options.stage ?? "rcpt";
  const keepBodies = options.keepBodies ?? true;
  const host = options.host ?? "127.0.0.1";
  let script: Script = options.script ?? (() => "accept");
  let closed = false;

  const received: ReceivedMessage[] = [];
  const dataSeen: string[] = [];
  const deliveryCounts = new Map<string, number>();
  const presentations = new Map<string, number>();
  const messageIndexBySession = new Map<string, number>();
  let messagesSeen = 0;
  const timers = new Set<NodeJS.Timeout>();
  // Keyed by the client's port: on loopback it tells open connections apart, and the session
  // carries it, so a "hangup" can find the socket that smtp-server keeps to itself.
  const socketsByPort = new Map<number, Socket>();

  function scriptReply(recipient: string, session: SMTPServerSession): Reply {
    const key = recipient.toLowerCase();
    const attemptsFor = presentations.get(key) ?? 0;
    presentations.set(key, attemptsFor + 1);
    return script({ recipient, messageIndex: messageIndexBySession.get(session.id) ?? 0, attemptsFor });
  }

  function decide(reply: Reply, done: (outcome: Outcome) => void): void {
    if (reply === "accept") return done(accepted);
    if (reply === "hangup") return done(hangup);
    if ("delayMs" in reply) {
      if (closed) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        decide(reply.then ?? "accept", done);
      }, reply.delayMs);
      timers.add(timer);
      return;
    }
    if (reply.code < 400) return done(accepted);
    const message = reply.message ?? (reply.code < 500 ? "Try again later" : "Mailbox unavailable");
    done({ kind: "reject", error: Object.assign(new Error(message), { responseCode: reply.code }) });
  }

  function hangUp(session: SMTPServerSession): void {
    socketsByPort.get(session.remotePort)?.destroy();
  }

  async function readMessage(stream: SMTPServerDataStream): Promise<Buffer> {
    let chunks: Buffer[] = [];
    let headersComplete = false;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (headersComplete) continue;
      chunks.push(chunk);
      if (keepBodies) continue;
      // Without bodies only the header block is needed: keep it, drop the rest as it streams
      // by, so a benchmark of tens of thousands of messages does not hold their bodies.
      const joined = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      chunks = [joined];
      const end = joined.indexOf(headerEnd);
      if (end >= 0) {
        chunks = [joined.subarray(0, end + headerEnd.length)];
        headersComplete = true;
      }
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  async function record(raw: Buffer, session: SMTPServerSession): Promise<void> {
    const parsed = await simpleParser(raw, { skipHtmlToText: !keepBodies, skipTextToHtml: true });
    const envelopeTo = session.envelope.rcptTo.map((rcpt) => rcpt.address);
    received.push({
      envelopeTo,
      from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
      subject: parsed.subject ?? "",
      messageId: parsed.messageId ?? null,
      text: keepBodies ? (parsed.text ?? "") : "",
      raw: keepBodies ? raw.toString("utf8") : "",
      secure: session.secure,
      clientHostname: session.hostNameAppearsAs,
    });
    for (const address of envelopeTo) {
      const key = address.toLowerCase();
      deliveryCounts.set(key, (deliveryCounts.get(key) ?? 0) + 1);
    }
  }

  async function answerData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<Outcome> {
    // Read to the end before answering, like a real server: the reply comes after the final dot.
    const raw = await readMessage(stream);
    if (keepBodies) dataSeen.push(raw.toString("utf8"));
    let reply: Reply = "accept";
    if (stage === "data") {
      for (const rcpt of session.envelope.rcptTo) {
        const candidate = scriptReply(rcpt.address, session);
        if (reply === "accept") reply = candidate;
      }
    }
    const outcome = await new Promise<Outcome>((done) => decide(reply, done));
    if (outcome.kind === "accept") await record(raw, session);
    return outcome;
  }

  const server = new SMTPServer({
    // Without a certificate of the test's own, STARTTLS would make every client negotiate TLS
    // with smtp-server's test certificate: slow, and beside the point of a loopback test server.
    ...(options.tls
      ? { key: options.tls.key, cert: options.tls.cert, secure: options.tls.implicit === true }
      : { disabledCommands: ["STARTTLS"] }),
    authOptional: true,
    allowInsecureAuth: true,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username ?? "anonymous" });
    },
    logger: false,
    disableReverseLookup: true,
    onMailFrom(_address, session, callback) {
      messageIndexBySession.set(session.id, messagesSeen++);
      callback();
    },
    onRcptTo(address, session, callback) {
      if (stage !== "rcpt") return callback();
      decide(scriptReply(address.address, session), (outcome) => {
        if (outcome.kind === "hangup") hangUp(session);
        else callback(outcome.kind === "reject" ? outcome.error : null);
      });
    },
    onData(stream, session, callback) {
      answerData(stream, session).then(
        (outcome) => {
          // No reply on a hang-up: the client must not learn whether the message was taken.
          if (outcome.kind === "hangup") hangUp(session);
          else callback(outcome.kind === "reject" ? outcome.error : null);
        },
        (err: unknown) => {
          const cause = err instanceof Error ? err.message : String(err);
          // A 451 makes a broken script or parse visible in the test instead of hanging it.
          callback(Object.assign(new Error(`Test server failed: ${cause}`), { responseCode: 451 }));
        },
      );
    },
    onClose(session) {
      messageIndexBySession.delete(session.id);
    },
  });

  // Hang-ups and clients that give up reset sockets on purpose; without a listener smtp-server's
  // 'error' event would crash the test run.
  server.on("error", () => undefined);
  server.server.on("connection", (socket: Socket) => {
    const port = socket.remotePort;
    if (port === undefined) return;
    socketsByPort.set(port, socket);
    socket.once("close", () => socketsByPort.delete(port));
  });

  await new Promise<void>((ready, fail) => {
    server.server.once("error", fail);
    server.listen(options.port ?? 0, host, () => {
      server.server.off("error", fail);
      ready();
    });
  });
  const address = server.server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`test SMTP server: expected a TCP address after listening, got ${String(address)}`);
  }
  const port = address.port;

  let closing: Promise<void> | undefined;
  return {
    url: `${options.tls?.implicit ? "smtps" : "smtp"}://${host}:${port}`,
    port,
    received,
    dataSeen,
    deliveries: (address) => deliveryCounts.get(address.toLowerCase()) ?? 0,
    duplicates: () => [...deliveryCounts].filter(([, count]) => count > 1).map(([address]) => address),
    setScript(fn) {
      script = fn;
    },
    close() {
      closing ??= new Promise<void>((done) => {
        closed = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => done());
        // smtp-server would otherwise wait up to 30 s for open sessions to end on their own.
        for (const socket of socketsByPort.values()) socket.destroy();
      });
      return closing;
    },
  };
}
