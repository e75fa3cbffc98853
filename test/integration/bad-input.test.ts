/**
 * Hostile but fair input, as issue 6 found it: each answer is a 4xx naming the field, the line or
 * the limit, nothing is cut short or half-created, and what is accepted is accepted whole. Over
 * the real embedded store and broker (test/helpers/api-app.ts).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  PASSWORD,
  SMALL_BODY_BYTES,
  SMALL_UPLOAD_BYTES,
  expectError,
  multipart,
  openTestApi,
  type TestApi,
} from "../helpers/api-app.js";

interface Created {
  campaign: { id: number; name: string; subject: string; html: string | null; total: number; status: string };
  accepted: number;
  rejected: { line: number; value: string; reason: string }[];
  rejectedCount: number;
}
interface Problem {
  field: string;
  reason: string;
}

const MAX_ID = 2_147_483_647;

describe("bad input", () => {
  let api: TestApi;
  let uploadDir: string;
  let previousTmpdir: string | undefined;

  beforeAll(async () => {
    api = await openTestApi();
    // The route spools uploads under os.tmpdir(): a private one shows whether any is left behind.
    uploadDir = mkdtempSync(join(tmpdir(), "lovage-bad-input-"));
    previousTmpdir = process.env.TMPDIR;
    process.env.TMPDIR = uploadDir;
  }, 120_000);

  afterAll(async () => {
    if (previousTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmpdir;
    await api?.close();
    if (uploadDir) rmSync(uploadDir, { recursive: true, force: true });
  });

  const campaignCount = async () =>
    (
      await api.store.db
        .selectFrom("lovage.campaigns")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow()
    ).n;

  /** Sends a request expected to be refused, and checks that no campaign and no upload file remain. */
  async function refused(
    request: Parameters<TestApi["call"]>[0],
    status: number,
    code: string,
    target = api.app,
  ) {
    const before = Number(await campaignCount());
    const error = expectError(await api.call(request, target), status, code);
    expect(Number(await campaignCount())).toBe(before);
    expect(readdirSync(uploadDir)).toEqual([]);
    return error;
  }

  const post = (payload: unknown) => ({
    method: "POST" as const,
    url: "/api/campaigns",
    payload: payload as object,
  });

  describe("nothing is cut short", () => {
    it("accepts a 16,000-address multipart recipients field over 1 MiB whole", async () => {
      const lines = Array.from(
        { length: 16_000 },
        (_, i) => `Recipient Number ${i} Of The Mailing List <recipient.${i}@mp.example.test>`,
      );
      const field = lines.join("\n");
      expect(Buffer.byteLength(field)).toBeGreaterThan(1024 * 1024);
      const response = await api.call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "Big field"],
          ["text", "Hi {{name}}"],
          ["recipients", field],
        ])),
      });
      expect(response.statusCode, response.body.slice(0, 500)).toBe(202);
      const created = response.json<Created>();
      expect(created).toMatchObject({ accepted: 16_000, rejectedCount: 0 });
      expect(created.campaign.total).toBe(16_000);
      // The last address, the one a cut would have halved, is stored as sent.
      const last = await api.call({
        method: "GET",
        url: `/api/campaigns/${created.campaign.id}/recipients?q=recipient.15999@`,
      });
      expect(last.json<{ recipients: { email: string }[] }>().recipients.map((r) => r.email)).toEqual([
        "recipient.15999@mp.example.test",
      ]);
    }, 120_000);

    it("keeps a 1.2 MB HTML body whole", async () => {
      const html = `<p>${"x".repeat(1_200_000)}</p>`;
      const response = await api.call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "Big HTML"],
          ["html", html],
          ["recipients", "html@example.com"],
        ])),
      });
      expect(response.statusCode, response.body.slice(0, 500)).toBe(202);
      expect(response.json<Created>().campaign.html).toBe(html);
    });

    it("answers 413 naming a multipart text field over the body limit and the limit in bytes", async () => {
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Too big"],
            ["text", "x".repeat(SMALL_BODY_BYTES + 1)],
            ["recipients", "big@example.com"],
          ])),
        },
        413,
        "too_large",
        api.small,
      );
      expect(error.message).toBe(
        `the multipart field "text" is larger than the limit of ${SMALL_BODY_BYTES} bytes (LOVAGE_MAX_BODY_BYTES)`,
      );
      expect(error.details).toEqual({ limitBytes: SMALL_BODY_BYTES });
    });

    it("answers 413 when the text fields together pass the body limit", async () => {
      const half = "y".repeat(SMALL_BODY_BYTES / 2 + 10);
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Together"],
            ["text", half],
            ["html", half],
            ["recipients", "together@example.com"],
          ])),
        },
        413,
        "too_large",
        api.small,
      );
      expect(error.message).toBe(
        `the multipart text fields together is larger than the limit of ${SMALL_BODY_BYTES} bytes (LOVAGE_MAX_BODY_BYTES)`,
      );
    });

    it("answers 413 naming the file and the upload limit, and leaves no temporary file", async () => {
      const rows = Array.from({ length: 400 }, (_, i) => `huge${i}@example.com`).join("\n");
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Huge"],
            ["text", "Hi"],
            ["file", { filename: "list.txt", content: rows }],
          ])),
        },
        413,
        "too_large",
        api.small,
      );
      expect(error.message).toBe(
        `the file "list.txt" is larger than the limit of ${SMALL_UPLOAD_BYTES} bytes (LOVAGE_MAX_UPLOAD_BYTES)`,
      );
    });

    it("answers 413 giving the limit for a JSON body over it", async () => {
      const recipients = Array.from({ length: 200 }, (_, i) => `big${i}@example.com`);
      const error = await refused(
        post({ subject: "Big", text: "Hi", recipients }),
        413,
        "too_large",
        api.small,
      );
      expect(error.message).toBe(
        `the request body is larger than the limit of ${SMALL_BODY_BYTES} bytes (LOVAGE_MAX_BODY_BYTES)`,
      );
      expect(error.details).toEqual({ limitBytes: SMALL_BODY_BYTES });
    });

    it("refuses a campaign name over 200 characters instead of cutting it", async () => {
      const error = await refused(
        post({ name: "n".repeat(201), subject: "Hi", text: "Hi", recipients: "a@example.com" }),
        400,
        "bad_request",
      );
      expect(error.details).toEqual([
        { field: "name", reason: "must have at most 200 characters (it has 201)" },
      ]);
      const kept = await api.call(
        post({ name: "n".repeat(200), subject: "Hi", text: "Hi", recipients: "a@example.com" }),
      );
      expect(kept.statusCode, kept.body).toBe(202);
      expect(kept.json<Created>().campaign.name).toBe("n".repeat(200));
    });

    it("refuses a subject over 998 characters, in JSON and in multipart", async () => {
      const subject = "s".repeat(999);
      const reason = "must have at most 998 characters (it has 999)";
      const json = await refused(
        post({ subject, text: "Hi", recipients: "a@example.com" }),
        400,
        "bad_request",
      );
      expect(json.details).toEqual([{ field: "subject", reason }]);
      const form = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", subject],
            ["text", "Hi"],
            ["recipients", "a@example.com"],
          ])),
        },
        400,
        "bad_request",
      );
      expect(form.details).toEqual([{ field: "subject", reason }]);
    });
  });

  describe("unknown fields", () => {
    it("refuses a misspelt send_at in JSON, naming it and the known fields", async () => {
      const error = await refused(
        post({ subject: "Later", text: "Hi", recipients: "a@example.com", send_at: "2030-01-01T00:00:00Z" }),
        400,
        "bad_request",
      );
      expect(error.message).toMatch(
        /^invalid request: body\.send_at: unknown field \(known: name, from, subject, text, html, priority, sendAt, replyTo, headers, listUnsubscribe, ignoreManualSuppressions, servers, errorBudget, recipients\)$/,
      );
      expect(error.details).toEqual([
        { field: "body.send_at", reason: expect.stringMatching(/^unknown field/) as unknown },
      ]);
    });

    it("refuses an unknown or repeated multipart field, naming it", async () => {
      const unknown = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "x"],
            ["text", "x"],
            ["send_at", "2030-01-01T00:00:00Z"],
            ["recipients", "a@example.com"],
          ])),
        },
        400,
        "bad_request",
      );
      expect(unknown.message).toMatch(/^unknown multipart field "send_at" \(known: name, from, subject,/);
      const twice = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "x"],
            ["subject", "y"],
            ["text", "x"],
            ["recipients", "a@example.com"],
          ])),
        },
        400,
        "bad_request",
      );
      expect(twice.message).toBe('multipart field "subject" is given twice');
    });

    it("refuses a file and a recipients field together rather than dropping one", async () => {
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "x"],
            ["text", "x"],
            ["recipients", "a@example.com"],
            ["file", { filename: "list.txt", content: "b@example.com\n" }],
          ])),
        },
        400,
        "bad_request",
      );
      expect(error.message).toContain('either as a "file" or as a "recipients" field, not both');
    });

    it.each([
      ["/api/campaigns?limt=5", "querystring.limt"],
      ["/api/campaigns/1?verbose=1", "querystring.verbose"],
      ["/api/emails?q=a&page=2", "querystring.page"],
      ["/api/queues?x=1", "querystring.x"],
      ["/healthz?x=1", "querystring.x"],
    ])("refuses the unknown query parameter of GET %s", async (url, field) => {
      const error = expectError(await api.call({ method: "GET", url }), 400, "bad_request");
      expect((error.details as Problem[]).map((p) => p.field)).toEqual([field]);
    });

    it("refuses unknown fields in the login, retry, pause and task bodies", async () => {
      const login = expectError(
        await api.app.inject({
          method: "POST",
          url: "/api/auth/login",
          payload: { username: "admin", password: PASSWORD, remember: true },
        }),
        400,
        "bad_request",
      );
      expect(login.message).toContain("body.remember: unknown field (known: username, password)");
      for (const [url, payload, field] of [
        ["/api/campaigns/1/retry", { status: ["failed"] }, "body.status"],
        ["/api/campaigns/1/pause", { force: true }, "body.force"],
        ["/api/tasks/add", { input: { a: 1, b: 2 }, opts: {} }, "body.opts"],
        ["/api/tasks/add", { input: { a: 1, b: 2 }, options: { delay: 5 } }, "body.options.delay"],
      ] as const) {
        const error = expectError(await api.call({ method: "POST", url, payload }), 400, "bad_request");
        expect(
          (error.details as Problem[]).map((p) => p.field),
          url,
        ).toEqual([field]);
      }
    });
  });

  describe("types are not coerced in bodies", () => {
    it('refuses a login with {"username":["admin"]} that used to succeed', async () => {
      const error = expectError(
        await api.app.inject({
          method: "POST",
          url: "/api/auth/login",
          payload: { username: ["admin"], password: [PASSWORD] },
        }),
        400,
        "bad_request",
      );
      expect(error.details).toEqual([
        { field: "body.username", reason: "must be string, got an array" },
        { field: "body.password", reason: "must be string, got an array" },
      ]);
    });

    it("refuses a number where a string is expected and a string where an integer is", async () => {
      const login = expectError(
        await api.app.inject({
          method: "POST",
          url: "/api/auth/login",
          payload: { username: 12, password: PASSWORD },
        }),
        400,
        "bad_request",
      );
      expect(login.details).toEqual([{ field: "body.username", reason: "must be string, got an integer" }]);
      const campaign = await refused(
        post({ subject: "x", text: "x", priority: "5", recipients: "a@example.com" }),
        400,
        "bad_request",
      );
      expect(campaign.details).toEqual([
        { field: "body.priority", reason: "must be integer or null, got a string" },
      ]);
    });

    it("still reads integers from the querystring", async () => {
      const response = await api.call({ method: "GET", url: "/api/campaigns?limit=2" });
      expect(response.statusCode, response.body).toBe(200);
    });
  });

  describe("characters PostgreSQL cannot store", () => {
    it("refuses a NUL in a recipient name, naming the field or the line", async () => {
      const inArray = await refused(
        post({
          subject: "x",
          text: "x",
          recipients: [{ email: "a@example.com" }, { email: "b@example.com", name: "Bo\u0000b" }],
        }),
        400,
        "bad_request",
      );
      expect(inArray.message).toBe(
        "body.recipients[1].name: contains a NUL character (U+0000), which cannot be stored",
      );
      const pasted = await refused(
        post({ subject: "x", text: "x", recipients: "a@example.com\nBo\u0000b <b@example.com>" }),
        400,
        "bad_request",
      );
      expect(pasted.message).toBe(
        "body.recipients: line 2: contains a NUL character (U+0000), which cannot be stored",
      );
      const file = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "x"],
            ["text", "x"],
            [
              "file",
              { filename: "list.csv", content: "email,name\na@example.com,A\nb@example.com,Bo\u0000b\n" },
            ],
          ])),
        },
        400,
        "bad_request",
      );
      expect(file.message).toMatch(
        /^recipients: line 3: a NUL byte \(at byte offset 43\) cannot be stored: is this a binary file/,
      );
    });

    it("refuses a NUL in a subject, in JSON and in multipart", async () => {
      const json = await refused(
        post({ subject: "Hi\u0000", text: "x", recipients: "a@example.com" }),
        400,
        "bad_request",
      );
      expect(json.details).toEqual([
        { field: "body.subject", reason: "contains a NUL character (U+0000), which cannot be stored" },
      ]);
      const form = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Hi\u0000"],
            ["text", "x"],
            ["recipients", "a@example.com"],
          ])),
        },
        400,
        "bad_request",
      );
      expect(form.details).toEqual([
        { field: "subject", reason: "contains a NUL character (U+0000), which cannot be stored" },
      ]);
    });

    it("refuses a NUL in a login username and in a search", async () => {
      const login = expectError(
        await api.app.inject({
          method: "POST",
          url: "/api/auth/login",
          payload: { username: "ad\u0000min", password: PASSWORD },
        }),
        400,
        "bad_request",
      );
      expect(login.message).toBe("body.username: contains a NUL character (U+0000), which cannot be stored");
      for (const url of ["/api/emails?q=a%00b", "/api/campaigns/1/recipients?q=%00"]) {
        const error = expectError(await api.call({ method: "GET", url }), 400, "bad_request");
        expect(error.message, url).toBe(
          "querystring.q: contains a NUL character (U+0000), which cannot be stored",
        );
      }
      const path = expectError(
        await api.call({ method: "GET", url: "/api/tasks/default:%00" }),
        400,
        "bad_request",
      );
      expect(path.message).toBe("params.id: contains a NUL character (U+0000), which cannot be stored");
    });

    it("refuses a lone surrogate escaped in JSON", async () => {
      const body = '{"subject":"Hi \\ud800","text":"x","recipients":"a@example.com"}';
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          payload: body,
          headers: { "content-type": "application/json" },
        },
        400,
        "bad_request",
      );
      expect(error.message).toBe(
        "body.subject: contains an unpaired surrogate (U+D800), which is not Unicode text",
      );
      const pair = await api.call({
        method: "POST",
        url: "/api/campaigns",
        payload: '{"subject":"Fox \\ud83e\\udd8a","text":"x","recipients":"a@example.com"}',
        headers: { "content-type": "application/json" },
      });
      expect(pair.statusCode, pair.body).toBe(202);
      expect(pair.json<Created>().campaign.subject).toBe("Fox 🦊");
    });

    it("refuses prototype keys as Fastify's own parser did", async () => {
      for (const [payload, message] of [
        [
          '{"subject":"x","__proto__":{"admin":true}}',
          "body.__proto__: a field named __proto__ is not allowed",
        ],
        [
          '{"subject":"x","recipients":[{"email":"a@example.com","constructor":{"prototype":{}}}]}',
          "body.recipients[0].constructor: a constructor.prototype field is not allowed",
        ],
      ]) {
        const error = await refused(
          { method: "POST", url: "/api/campaigns", payload, headers: { "content-type": "application/json" } },
          400,
          "bad_request",
        );
        expect(error.message).toBe(message);
      }
    });

    it("refuses a JSON body that is not UTF-8, naming the byte", async () => {
      const body = Buffer.concat([
        Buffer.from('{"subject":"Ren'),
        Buffer.from([0xe9]),
        Buffer.from('","text":"x","recipients":"a@example.com"}'),
      ]);
      const error = await refused(
        {
          method: "POST",
          url: "/api/campaigns",
          payload: body,
          headers: { "content-type": "application/json" },
        },
        400,
        "bad_request",
      );
      expect(error.message).toBe("the body is not UTF-8: byte 0xE9 at byte offset 15");
    });
  });

  describe("numbers and dates out of range", () => {
    const tooBig = String(MAX_ID + 1);

    it.each([
      ["GET", `/api/campaigns/${tooBig}`],
      ["GET", `/api/campaigns/${tooBig}/recipients`],
      ["GET", `/api/campaigns/${tooBig}/recipients.csv`],
      ["POST", `/api/campaigns/${tooBig}/pause`],
      ["POST", `/api/campaigns/${tooBig}/resume`],
      ["POST", `/api/campaigns/${tooBig}/cancel`],
      ["POST", `/api/campaigns/${tooBig}/retry`],
      ["GET", `/api/messages/${tooBig}`],
      ["GET", "/api/messages/99999999999999999999999"],
    ] as const)("answers 400 naming the id for %s %s", async (method, url) => {
      const error = expectError(await api.call({ method, url }), 400, "bad_request");
      expect(error.details).toEqual([{ field: "params.id", reason: `must be at most ${MAX_ID}` }]);
    });

    it.each(["Infinity", "-Infinity", "1e400", "0x10", "1.0", "%205"])(
      "answers 400 for an id written as %s, which ajv alone would coerce",
      async (id) => {
        for (const [method, url] of [
          ["GET", `/api/campaigns/${id}`],
          ["POST", `/api/campaigns/${id}/resume`],
          ["GET", `/api/emails?cursor=${id}`],
        ] as const) {
          const error = expectError(await api.call({ method, url }), 400, "bad_request");
          expect((error.details as Problem[])[0]?.reason, url).toMatch(
            /^must be a whole number written in digits, got /,
          );
        }
      },
    );

    it("answers 404, not 400, for the largest id", async () => {
      expectError(await api.call({ method: "GET", url: `/api/campaigns/${MAX_ID}` }), 404, "not_found");
    });

    it.each([
      [`/api/campaigns/1/recipients?cursor=${tooBig}`, "querystring.cursor", `must be at most ${MAX_ID}`],
      [`/api/emails?cursor=${tooBig}`, "querystring.cursor", `must be at most ${MAX_ID}`],
      ["/api/emails?cursor=-1", "querystring.cursor", "must be at least 0"],
      [`/api/campaigns?before=${tooBig}`, "querystring.before", `must be at most ${MAX_ID}`],
      ["/api/campaigns?limit=0", "querystring.limit", "must be at least 1"],
      ["/api/messages?limit=1001", "querystring.limit", "must be at most 1000"],
    ])("answers 400 naming the bound for GET %s", async (url, field, reason) => {
      const error = expectError(await api.call({ method: "GET", url }), 400, "bad_request");
      expect(error.details).toEqual([{ field, reason }]);
    });

    it.each(["0000-01-01", "+275760-09-13", "2026-02-30T09:00:00Z", "next tuesday", "2026-12-01T09:00:00"])(
      "refuses a sendAt of %s naming the field",
      async (sendAt) => {
        const error = await refused(
          post({ subject: "x", text: "x", sendAt, recipients: "a@example.com" }),
          400,
          "bad_request",
        );
        expect(error.details).toEqual([
          {
            field: "sendAt",
            reason: "must be an ISO 8601 date and time with a zone, such as 2026-12-01T09:00:00Z",
          },
        ]);
      },
    );

    it("refuses a sendAt more than 10 years ahead or a year back, and takes one within", async () => {
      for (const sendAt of ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2000-01-01T00:00:00Z"]) {
        const error = await refused(
          post({ subject: "x", text: "x", sendAt, recipients: "a@example.com" }),
          400,
          "bad_request",
        );
        expect((error.details as Problem[])[0]?.reason).toMatch(
          /^must be from .* \(a year ago\) to .* \(10 years ahead\)$/,
        );
      }
      const inAYear = new Date(Date.now() + 365 * 24 * 3600_000).toISOString().replace(/\.\d+Z$/, "+02:00");
      const response = await api.call(
        post({ subject: "x", text: "x", sendAt: inAYear, recipients: "a@example.com" }),
      );
      expect(response.statusCode, response.body).toBe(202);
      expect(response.json<Created>().campaign.status).toBe("scheduled");
    });

    it("refuses a task runAt out of range or malformed", async () => {
      for (const runAt of ["0000-01-01T00:00:00Z", "+275760-09-13T00:00:00Z", "9999-01-01T00:00:00Z"]) {
        const error = expectError(
          await api.call({
            method: "POST",
            url: "/api/tasks/add",
            payload: { input: { a: 1, b: 2 }, options: { runAt } },
          }),
          400,
          "bad_request",
        );
        expect((error.details as Problem[])[0]?.field, runAt).toBe("body.options.runAt");
      }
    });
  });

  describe("unclear answers made clear", () => {
    const upload = async (filename: string, content: string | Uint8Array) => ({
      method: "POST" as const,
      url: "/api/campaigns",
      ...(await multipart([
        ["subject", "x"],
        ["text", "Hi {{name}}"],
        ["file", { filename, content }],
      ])),
    });

    it("says the file is empty, or a CSV holds only its header", async () => {
      const empty = await refused(await upload("list.csv", ""), 400, "bad_request");
      expect(empty.message).toBe("recipients: the file is empty");
      const header = await refused(await upload("list.csv", "email,name\r\n"), 400, "bad_request");
      expect(header.message).toBe("recipients: the CSV has a header row but no recipients");
      const pasted = await refused(post({ subject: "x", text: "x", recipients: "" }), 400, "bad_request");
      expect(pasted.message).toBe("recipients is empty");
    });

    it("refuses a Latin-1 CSV naming the line and the byte, and stores nothing", async () => {
      const latin1 = Buffer.from("email,name\nbob@example.com,Bob\nrene@example.com,Ren\xe9\n", "latin1");
      const error = await refused(await upload("list.csv", latin1), 400, "bad_request");
      expect(error.message).toBe(
        "recipients: line 3: byte 0xE9 (at byte offset 51) is not UTF-8; save the file as UTF-8",
      );
    });

    it("reads a UTF-16 file with a BOM, names intact", async () => {
      const utf16 = Buffer.from("\uFEFFemail,name\r\nlan@example.vn,Nguyễn Thị Lan\r\n", "utf16le");
      const response = await api.call(await upload("list.csv", utf16));
      expect(response.statusCode, response.body).toBe(202);
      const created = response.json<Created>();
      const page = await api.call({ method: "GET", url: `/api/campaigns/${created.campaign.id}/recipients` });
      expect(
        page.json<{ recipients: { email: string; fields: Record<string, string> }[] }>().recipients,
      ).toMatchObject([{ email: "lan@example.vn", fields: { name: "Nguyễn Thị Lan" } }]);
    });

    it("says where malformed JSON is broken", async () => {
      const error = expectError(
        await api.call({
          method: "POST",
          url: "/api/campaigns",
          payload: '{\n  "subject": "x",\n  "text": tru\n}',
          headers: { "content-type": "application/json" },
        }),
        400,
        "bad_request",
      );
      expect(error.message).toBe(
        'invalid JSON at line 3, column 11 (character 30): unexpected word "tru" (strings need double quotes; literals are true, false and null)',
      );
      expect(error.details).toEqual({ position: 30, line: 3, column: 11 });
    });
  });

  describe("the CSV export", () => {
    it("neutralises cells a spreadsheet would run as formulas", async () => {
      const created = await api.call(
        post({
          subject: "Export",
          text: "Hi",
          recipients: [
            { email: "formula@example.com", name: '=HYPERLINK("http://x")' },
            { email: "at@example.com", name: "@SUM(1)" },
            { email: "plus@example.com", name: "+1" },
            { email: "minus@example.com", name: "-2" },
            { email: "tab@example.com", name: "\tTab" },
            { email: "plain@example.com", name: "Plain, Name" },
          ],
        }),
      );
      expect(created.statusCode, created.body).toBe(202);
      const id = created.json<Created>().campaign.id;
      const csv = await api.call({ method: "GET", url: `/api/campaigns/${id}/recipients.csv` });
      expect(csv.statusCode).toBe(200);
      const names = csv.body
        .trimEnd()
        .split("\n")
        .slice(1)
        .map((row) => row.split(",").slice(3, -8).join(","));
      expect(names).toEqual([
        `"'=HYPERLINK(""http://x"")"`,
        "'@SUM(1)",
        "'+1",
        "'-2",
        "'\tTab",
        '"Plain, Name"',
      ]);
    });
  });
});
