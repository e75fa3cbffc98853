/**
 * The process's logger: pino writing JSON lines to stdout, or pino-pretty's human-readable lines
 * when stdout is a terminal. Every line passes through the secret redactor before it is written,
 * whoever logged it (Lovage, Fastify, a driver's error in `err`), so no setting's secret is
 * printed in any form. It writes through `process.stdout`, the stream `console.log` uses, so the
 * start banner and the log lines come out in the order they were written.
 */
import { pino, type Logger } from "pino";
import pinoPretty from "pino-pretty";
import { createJsonLineRedactor, type Secrets } from "./redact.js";

/** What Fastify hands the `req` serializer: the request fields a log line shows. */
interface LoggedRequest {
  method: string;
  url: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

/** The URL with the value of a `token` query parameter (the events stream takes one) hidden. */
export function withoutQueryToken(url: string): string {
  const query = url.indexOf("?");
  if (query < 0) return url;
  const params = url
    .slice(query + 1)
    .split("&")
    .map((param) => (/^token(=|$)/i.test(param) ? "token=***" : param));
  return `${url.slice(0, query)}?${params.join("&")}`;
}

export function createRedactingLogger(options: {
  level: string;
  secrets: Secrets;
  /** Human-readable lines instead of JSON. @defaultValue whether stdout is a terminal */
  pretty?: boolean;
  output?: NodeJS.WritableStream;
}): Logger {
  const output = options.output ?? process.stdout;
  const redact = createJsonLineRedactor(options.secrets);
  const render =
    (options.pretty ?? process.stdout.isTTY === true)
      ? pinoPretty.prettyFactory({ colorize: true, translateTime: "SYS:HH:MM:ss", ignore: "pid,hostname" })
      : (line: string) => line;
  return pino(
    {
      level: options.level,
      redact: {
        paths: ["password", "*.password", "token", "*.token", "authorization", "*.authorization"],
        censor: "***",
      },
      serializers: {
        req: (req: LoggedRequest) => ({
          method: req.method,
          url: withoutQueryToken(req.url),
          host: req.host,
          remoteAddress: req.ip,
          remotePort: req.socket?.remotePort,
        }),
      },
    },
    { write: (line: string) => void output.write(render(redact(line))) },
  );
}
