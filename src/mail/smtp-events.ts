/**
 * What the send path tells about the servers and groups it sends to: a server taken out or
 * back in, a rate lowered or raised on the receiver's word, a suspension, the connections
 * lowered. Events are facts for people (the campaign view, /metrics); the figures are each
 * server's state now, as one worker sees it.
 */

export type SmtpEventKind =
  /** Taken out for a cool-down: it refused connections or timed out several times in a row. */
  | "out"
  /** Back in after its cool-down (a connection worked). */
  | "in"
  /** A throttling reply: its rate (this process's) was lowered. */
  | "slower"
  /** Quiet for a while: its rate was raised again (or the adaptive limit dropped). */
  | "faster"
  /** A reply that says to stop: no message until `until`. */
  | "suspended"
  /** Its suspension ended: it resumes on one connection. */
  | "resumed"
  /** A refusal at connection time ("too many connections"), or the ramp after a resume. */
  | "connections";

export interface SmtpEvent {
  at: Date;
  scope: "server" | "group";
  name: string;
  kind: SmtpEventKind;
  /** The reply that caused it, when one did. */
  reply: string | null;
  /** The messages per second now allowed by this process (null: no adaptive limit). */
  rate: number | null;
  connections: number | null;
  until: Date | null;
}

export type ServerState = "in" | "out" | "probing" | "suspended";

export interface ServerFigures {
  name: string;
  state: ServerState;
  /** When it may be tried again (out) or resumes (suspended). */
  until: Date | null;
  sent: number;
  /** 5xx answers. */
  failed: number;
  /** 4xx answers and messages not tried (the server was out, refused, or a limit held them). */
  deferred: number;
  /** Messages per second accepted over the last 10 s, this process. */
  rate: number;
  /** The adaptive rate in force, if the server throttled us; else its `rate=`, or null. */
  limitRate: number | null;
  /** Transactions this process may have in flight to it now. */
  connections: number;
  /** The last reply that changed its state. */
  reply: string | null;
}

export interface SmtpEventSink {
  (event: SmtpEvent): void;
}
