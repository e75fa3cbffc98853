// The new-campaign form: sender, subject, bodies, and recipients pasted or uploaded as a
// CSV/TXT file. On success the app moves to the campaign with the accepted/rejected report;
// when no line is valid, the rejected lines stay here next to the form.
import { type FormEvent, useState } from "react";
import {
  type CampaignFields,
  createCampaign,
  type CreateCampaignResult,
  type MessagePreview,
  previewCampaign,
  type RejectedReport,
  rejectedOf,
  testSendCampaign,
  type TestSendAnswer,
} from "./api";
import { formatNumber } from "./format";
import { ErrorBox, RejectedTable } from "./widgets";

type Mode = "paste" | "file";

const PASTE_EXAMPLE = "ana@example.com\nBình Nguyễn <binh@example.com>\nchi@example.com,Chi";

export function NewCampaignView({ onCreated }: { onCreated: (result: CreateCampaignResult) => void }) {
  const [name, setName] = useState("");
  const [from, setFrom] = useState("");
  const [subject, setSubject] = useState("");
  const [text, setText] = useState("");
  const [html, setHtml] = useState("");
  const [mode, setMode] = useState<Mode>("paste");
  const [pasted, setPasted] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [rejected, setRejected] = useState<RejectedReport>({ rejected: [], rejectedCount: 0 });
  const [replyTo, setReplyTo] = useState("");
  const [listUnsubscribe, setListUnsubscribe] = useState(true);
  const [servers, setServers] = useState("");
  const [errorBudget, setErrorBudget] = useState("");
  const [testTo, setTestTo] = useState("");
  const [preview, setPreview] = useState<MessagePreview | null>(null);
  const [testAnswer, setTestAnswer] = useState<TestSendAnswer | null>(null);
  const [sampleError, setSampleError] = useState<string | null>(null);

  const fields = (): CampaignFields => ({
    name: name.trim() || undefined,
    from: from.trim() || undefined,
    subject,
    text: text.trim() ? text : undefined,
    html: html.trim() ? html : undefined,
    replyTo: replyTo.trim() || undefined,
    listUnsubscribe: listUnsubscribe ? undefined : false,
    servers: servers.trim() || undefined,
    errorBudget: errorBudget.trim() || undefined,
  });

  const sample = async (kind: "preview" | "test") => {
    setSampleError(null);
    setTestAnswer(null);
    if (!testTo.trim()) {
      setSampleError("Give a test recipient first.");
      return;
    }
    try {
      if (kind === "preview") setPreview(await previewCampaign(fields(), testTo.trim()));
      else setTestAnswer(await testSendCampaign(fields(), testTo.trim()));
    } catch (err) {
      setSampleError((err as Error).message);
    }
  };

  const lineCount = pasted.split("\n").filter((l) => l.trim() !== "").length;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setRejected({ rejected: [], rejectedCount: 0 });
    if (!text.trim() && !html.trim()) {
      setError("Write a text body, an HTML body, or both.");
      return;
    }
    if (mode === "file" && !file) {
      setError("Choose a CSV or TXT file of recipients.");
      return;
    }
    if (mode === "paste" && lineCount === 0) {
      setError("Paste at least one recipient, one per line.");
      return;
    }
    setBusy(true);
    try {
      const result = await createCampaign(
        fields(),
        mode === "file" && file ? { kind: "file", file } : { kind: "pasted", text: pasted },
      );
      onCreated(result);
    } catch (err) {
      setError((err as Error).message);
      setRejected(rejectedOf(err));
      setBusy(false);
    }
  };

  return (
    <section className="page">
      <div className="page-head">
        <h1>New campaign</h1>
      </div>
      <form className="card form-grid" onSubmit={(e) => void submit(e)} data-testid="campaign-form">
        <div className="form-main">
          <div className="row-2">
            <label className="field">
              <span>
                From <em className="muted">empty: the server&apos;s default sender</em>
              </span>
              <input
                type="text"
                value={from}
                onChange={(e) => setFrom(e.target.value)}
                placeholder="News <news@example.com>"
                data-testid="campaign-from"
              />
            </label>
            <label className="field">
              <span>
                Campaign name <em className="muted">optional</em>
              </span>
              <input
                value={name}
                onChange={(e) => setName(e.target.value)}
                placeholder="Spring newsletter"
                data-testid="campaign-name"
              />
            </label>
          </div>
          <div className="row-2">
            <label className="field">
              <span>
                Reply-To <em className="muted">optional; replies go to From otherwise</em>
              </span>
              <input
                type="text"
                value={replyTo}
                onChange={(e) => setReplyTo(e.target.value)}
                placeholder="Support <help@example.com>"
                data-testid="campaign-reply-to"
              />
            </label>
            <label className="field checkbox-field">
              <input
                type="checkbox"
                checked={listUnsubscribe}
                onChange={(e) => setListUnsubscribe(e.target.checked)}
                data-testid="campaign-list-unsubscribe"
              />
              <span>One-click unsubscribe header (uncheck only for transactional mail)</span>
            </label>
          </div>
          <div className="row-2">
            <label className="field">
              <span>
                SMTP servers{" "}
                <em className="muted">optional; names from LOVAGE_SMTP_URL, separated by commas</em>
              </span>
              <input
                type="text"
                value={servers}
                onChange={(e) => setServers(e.target.value)}
                placeholder="any server"
                data-testid="campaign-servers"
              />
            </label>
            <label className="field">
              <span>
                Error budget <em className="muted">optional; share%/window/minimum, or off</em>
              </span>
              <input
                type="text"
                value={errorBudget}
                onChange={(e) => setErrorBudget(e.target.value)}
                placeholder="the server's (10%/200/50 by default)"
                data-testid="campaign-error-budget"
              />
            </label>
          </div>
          <label className="field">
            <span>Subject</span>
            <input
              value={subject}
              onChange={(e) => setSubject(e.target.value)}
              placeholder="Hello {{name}}"
              required
              data-testid="campaign-subject"
            />
          </label>
          <label className="field">
            <span>Text body</span>
            <textarea
              rows={7}
              value={text}
              onChange={(e) => setText(e.target.value)}
              placeholder={"Hi {{name}},\n\n…"}
              data-testid="campaign-text"
            />
          </label>
          <label className="field">
            <span>
              HTML body <em className="muted">optional; one of the two bodies is needed</em>
            </span>
            <textarea
              rows={5}
              className="mono"
              value={html}
              onChange={(e) => setHtml(e.target.value)}
              placeholder="<p>Hi {{name}},</p>"
              data-testid="campaign-html"
            />
          </label>

          <fieldset className="field recipients">
            <legend>Recipients</legend>
            <div className="segmented" role="tablist">
              <button
                type="button"
                role="tab"
                aria-selected={mode === "paste"}
                className={mode === "paste" ? "seg-btn seg-btn-active" : "seg-btn"}
                onClick={() => setMode("paste")}
                data-testid="recipients-mode-paste"
              >
                Paste a list
              </button>
              <button
                type="button"
                role="tab"
                aria-selected={mode === "file"}
                className={mode === "file" ? "seg-btn seg-btn-active" : "seg-btn"}
                onClick={() => setMode("file")}
                data-testid="recipients-mode-file"
              >
                Upload a file
              </button>
            </div>
            {mode === "paste" ? (
              <>
                <textarea
                  rows={10}
                  className="recipients-input"
                  value={pasted}
                  onChange={(e) => setPasted(e.target.value)}
                  placeholder={PASTE_EXAMPLE}
                  data-testid="campaign-recipients"
                />
                <div className="hint">
                  {formatNumber(lineCount)} non-empty {lineCount === 1 ? "line" : "lines"}
                </div>
              </>
            ) : (
              <div className="file-drop">
                <input
                  type="file"
                  accept=".csv,.txt,text/csv,text/plain"
                  onChange={(e) => setFile(e.target.files?.[0] ?? null)}
                  data-testid="campaign-file"
                />
                {file && (
                  <div className="hint" data-testid="campaign-file-name">
                    {file.name} · {formatNumber(file.size)} bytes
                  </div>
                )}
              </div>
            )}
          </fieldset>

          <fieldset className="field sample">
            <legend>Check before sending</legend>
            <div className="row-2">
              <input
                type="text"
                value={testTo}
                onChange={(e) => setTestTo(e.target.value)}
                placeholder="Your Name <you@example.com>"
                aria-label="Test recipient"
                data-testid="campaign-test-to"
              />
              <div className="actions">
                <button
                  className="btn"
                  type="button"
                  onClick={() => void sample("preview")}
                  data-testid="campaign-preview"
                >
                  Preview
                </button>
                <button
                  className="btn"
                  type="button"
                  onClick={() => void sample("test")}
                  data-testid="campaign-test-send"
                >
                  Send a test
                </button>
              </div>
            </div>
            <ErrorBox message={sampleError} testId="campaign-sample-error" />
            {testAnswer && (
              <div className="hint" data-testid="campaign-test-answer">
                {testAnswer.ok
                  ? `Sent through ${testAnswer.server}: ${testAnswer.response}`
                  : `Not sent (${testAnswer.kind}) by ${testAnswer.server}: ${testAnswer.error}`}
              </div>
            )}
            {preview && (
              <div className="preview" data-testid="campaign-preview-result">
                <table className="table">
                  <tbody>
                    {preview.headers.map((h, i) => (
                      <tr key={i}>
                        <th>{h.name}</th>
                        <td className="mono">{h.value}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                <h3>Text part</h3>
                <pre className="code" data-testid="campaign-preview-text">
                  {preview.text ?? ""}
                </pre>
                {preview.html !== null && (
                  <>
                    <h3>HTML part (source)</h3>
                    <pre className="code">{preview.html}</pre>
                  </>
                )}
              </div>
            )}
          </fieldset>

          <ErrorBox message={error} testId="campaign-error" />
          <RejectedTable rejected={rejected.rejected} total={rejected.rejectedCount} />

          <div className="actions">
            <button className="btn btn-primary" type="submit" disabled={busy} data-testid="campaign-submit">
              {busy ? "Sending…" : "Send campaign"}
            </button>
          </div>
        </div>

        <aside className="form-aside">
          <h3>Recipients</h3>
          <p>One per line, in any of these forms:</p>
          <pre className="code">{`ana@example.com\nAna Silva <ana@example.com>\nana@example.com,Ana Silva`}</pre>
          <p>
            A <strong>CSV</strong> file needs a header row naming its columns, with an <code>email</code>{" "}
            column; a <strong>TXT</strong> file is one recipient per line, as above.
          </p>
          <h3>Personalization</h3>
          <p>
            <code>{"{{name}}"}</code> in the subject or bodies becomes each recipient&apos;s name. Every CSV
            column is a placeholder too: a column <code>city</code> fills <code>{"{{city}}"}</code>.
          </p>
          <p className="muted">
            Invalid lines are reported with their line number; duplicates are dropped; the valid ones are
            sent.
          </p>
        </aside>
      </form>
    </section>
  );
}
