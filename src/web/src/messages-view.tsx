// The built-in mail catcher's inbox: what Lovage "sent" when no external SMTP server is
// configured. A list (time, to, subject) and one message: text, and HTML in a sandboxed
// iframe, which runs no script and reaches nothing of the dashboard. The HTML comes from its
// own route, whose policy lets the email's inline styles apply (docs/security.md).
import { useCallback, useEffect, useState } from "react";
import {
  type CaughtMessage,
  type CaughtMessageSummary,
  getMessage,
  listMessages,
  messageHtmlUrl,
} from "./api";
import { formatTime } from "./format";
import { href, navigate } from "./route";
import { Empty, ErrorBox } from "./widgets";

const POLL_MS = 5000;

export function MessagesView({ id }: { id: string | null }) {
  return id === null ? <MessageList /> : <MessageDetail key={id} id={id} />;
}

function MessageList() {
  const [messages, setMessages] = useState<CaughtMessageSummary[] | null>(null);
  const [enabled, setEnabled] = useState(true);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const list = await listMessages(200);
      setMessages(list.messages);
      setEnabled(list.enabled);
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, []);

  useEffect(() => {
    void load();
    const t = setInterval(() => void load(), POLL_MS);
    return () => clearInterval(t);
  }, [load]);

  return (
    <section className="page">
      <div className="page-head">
        <div>
          <h1>Caught mail</h1>
          <div className="muted">
            Messages received by the built-in mail catcher, newest first. Nothing here leaves this machine.
          </div>
        </div>
        <button className="btn" onClick={() => void load()} data-testid="messages-refresh">
          Refresh
        </button>
      </div>
      <ErrorBox message={error} />
      {!enabled ? (
        <div className="alert alert-info" data-testid="catcher-disabled">
          An external SMTP server is configured (<code>LOVAGE_SMTP_URL</code>), so the mail catcher is off:
          messages go to that server and are not shown here. The email log of each campaign still records
          every delivery.
        </div>
      ) : messages === null ? (
        !error && <Empty>Loading…</Empty>
      ) : messages.length === 0 ? (
        <Empty>No message caught yet. Send a campaign and its emails appear here.</Empty>
      ) : (
        <div className="card table-wrap">
          <table className="table table-hover" data-testid="messages-table">
            <thead>
              <tr>
                <th>Received</th>
                <th>To</th>
                <th>Subject</th>
              </tr>
            </thead>
            <tbody>
              {messages.map((m) => (
                <tr
                  key={m.id}
                  className="clickable"
                  onClick={() => navigate({ view: "messages", id: String(m.id) })}
                  data-testid="message-row"
                >
                  <td className="nowrap">{formatTime(m.receivedAt)}</td>
                  <td>{m.to.join(", ")}</td>
                  <td>
                    <a
                      href={href({ view: "messages", id: String(m.id) })}
                      onClick={(e) => e.stopPropagation()}
                      data-testid="message-subject"
                    >
                      {m.subject || "(no subject)"}
                    </a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function MessageDetail({ id }: { id: string }) {
  const [message, setMessage] = useState<CaughtMessage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tab, setTab] = useState<"html" | "text" | "headers">("text");

  useEffect(() => {
    let live = true;
    getMessage(id).then(
      (m) => {
        if (!live) return;
        setMessage(m);
        setTab(m.html ? "html" : "text");
      },
      (err: unknown) => live && setError((err as Error).message),
    );
    return () => {
      live = false;
    };
  }, [id]);

  return (
    <section className="page">
      <div className="breadcrumb">
        <a href={href({ view: "messages", id: null })}>Caught mail</a> <span aria-hidden="true">›</span>{" "}
        message
      </div>
      <ErrorBox message={error} />
      {message && (
        <div className="card message" data-testid="message-view">
          <h1 className="message-subject" data-testid="message-view-subject">
            {message.subject || "(no subject)"}
          </h1>
          <dl className="message-meta">
            <dt>From</dt>
            <dd>{message.from}</dd>
            <dt>To</dt>
            <dd data-testid="message-view-to">{message.to.join(", ")}</dd>
            <dt>Received</dt>
            <dd>{formatTime(message.receivedAt)}</dd>
          </dl>
          <div className="segmented">
            {message.html && (
              <button
                className={tab === "html" ? "seg-btn seg-btn-active" : "seg-btn"}
                onClick={() => setTab("html")}
                data-testid="message-tab-html"
              >
                HTML
              </button>
            )}
            <button
              className={tab === "text" ? "seg-btn seg-btn-active" : "seg-btn"}
              onClick={() => setTab("text")}
              data-testid="message-tab-text"
            >
              Text
            </button>
            {message.headers != null && (
              <button
                className={tab === "headers" ? "seg-btn seg-btn-active" : "seg-btn"}
                onClick={() => setTab("headers")}
                data-testid="message-tab-headers"
              >
                Headers
              </button>
            )}
          </div>
          {tab === "html" && message.html && (
            <iframe
              className="message-html"
              sandbox=""
              src={messageHtmlUrl(message.id)}
              title="HTML body"
              data-testid="message-html-frame"
            />
          )}
          {tab === "text" && (
            <pre className="message-text" data-testid="message-text">
              {message.text ?? "(no text part)"}
            </pre>
          )}
          {tab === "headers" && message.headers != null && (
            <pre className="message-text message-headers">{formatHeaders(message.headers)}</pre>
          )}
        </div>
      )}
      {!message && !error && <Empty>Loading…</Empty>}
    </section>
  );
}

/** Headers as the catcher gives them: an object of name → value(s), or a list of pairs. */
function formatHeaders(headers: unknown): string {
  const text = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
  if (Array.isArray(headers)) {
    return headers
      .map((h: unknown) => {
        if (h && typeof h === "object" && "key" in h && "value" in h)
          return `${text(h.key)}: ${text(h.value)}`;
        return text(h);
      })
      .join("\n");
  }
  if (headers && typeof headers === "object") {
    return Object.entries(headers)
      .map(([k, v]) => `${k}: ${text(v)}`)
      .join("\n");
  }
  return text(headers);
}
