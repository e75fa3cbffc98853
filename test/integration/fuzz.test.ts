/**
 * Fuzzing the HTTP API from its own OpenAPI document (`app.swagger()`): for every route, requests
 * built with fast-check from valid values of each path, query and body field and from hostile
 * ones (NUL, lone surrogates, numbers past 2^31 and 2^53, negatives, arrays and objects where
 * scalars belong, unknown fields, huge strings, malformed and deep JSON, odd content types, a
 * multipart campaign with random bytes as its file), signed in as admin. No answer may be a 5xx,
 * every 4xx has the error shape, and the server still answers normally afterwards.
 *
 * Over the real embedded store and broker (test/helpers/api-app.ts); campaigns and tasks it
 * creates are thrown away with it. `LOVAGE_FUZZ_RUNS` sets the requests per route (default 20,
 * which keeps the file near 20 s); `LOVAGE_FUZZ_SEED` replays the run a failure reports.
 */
import fc from "fast-check";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectError, multipart, openTestApi, type Part, type TestApi } from "../helpers/api-app.js";

const RUNS = Number(process.env.LOVAGE_FUZZ_RUNS ?? 20);
const SEED = process.env.LOVAGE_FUZZ_SEED === undefined ? undefined : Number(process.env.LOVAGE_FUZZ_SEED);

/** The JSON Schema keywords the routes use, as @fastify/swagger writes them. */
interface Schema {
  type?: string | string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
  nullable?: boolean;
  anyOf?: Schema[];
  format?: string;
}
interface Parameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  schema: Schema;
}
interface Operation {
  method: "GET" | "POST";
  path: string;
  parameters: Parameter[];
  body: Schema | undefined;
}

/** Every route of the document but the event stream, which never ends, and the docs themselves. */
function operationsOf(document: { paths: Record<string, Record<string, unknown>> }): Operation[] {
  const operations: Operation[] = [];
  for (const [path, methods] of Object.entries(document.paths)) {
    if (path === "/api/events" || path.startsWith("/api/docs")) continue;
    for (const [method, raw] of Object.entries(methods)) {
      const operation = raw as {
        parameters?: Parameter[];
        requestBody?: { content?: Record<string, { schema: Schema }> };
      };
      operations.push({
        method: method.toUpperCase() as Operation["method"],
        path,
        parameters: operation.parameters ?? [],
        body: operation.requestBody?.content?.["application/json"]?.schema,
      });
    }
  }
  return operations;
}

/** A string too long to print in a counterexample: it says its length instead. */
class Huge {
  constructor(readonly length: number) {}
  toJSON(): string {
    return "y".repeat(this.length);
  }
  [fc.toStringMethod](): string {
    return `Huge(${this.length})`;
  }
}

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));
const hostileChar = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constant("\0") },
  { weight: 1, arbitrary: loneSurrogate },
  fc.constantFrom(
    "\0",
    "\r",
    "\n",
    "\t",
    "'",
    '"',
    "%",
    "<",
    ">",
    "\\",
    ",",
    ";",
    "=",
    "@",
    "&",
    "?",
    "/",
    "..",
  ),
);
const shortHostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: hostileChar, maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.constantFrom(
    "",
    " ",
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff x",
    "0",
    "-0",
    "-1",
    "1.5",
    "1e308",
    "0x10",
    "NaN",
    "Infinity",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9007199254740993",
    "99999999999999999999999",
    "0000-01-01",
    "+275760-09-13",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "%00",
    "../../etc/passwd",
    "'; DROP TABLE lovage.campaigns; --",
    '=HYPERLINK("http://x")',
    "🦊".repeat(100),
    "x".repeat(300),
  ),
);
const hostileString: fc.Arbitrary<string | Huge> = fc.oneof(
  { weight: 9, arbitrary: shortHostileString },
  { weight: 1, arbitrary: fc.constant(new Huge(200_000)) },
);
const hugeNumber = fc.constantFrom(
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53 + 2,
  -1,
  0,
  1e308,
  -1e308,
  0.5,
  Number.MAX_SAFE_INTEGER,
);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  hugeNumber,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(hostileString, { maxLength: 3 }),
  fc.array(hugeNumber, { minLength: 1, maxLength: 2 }),
  fc.dictionary(shortHostileString, hostileString, { maxKeys: 3 }),
  fc.jsonValue({ maxDepth: 3 }),
);

/** Values a well-meaning client would send for a field of this name, beyond what its schema says. */
const HINTS: Record<string, fc.Arbitrary<unknown>> = {
  recipients: fc.oneof(
    fc.constantFrom("a@example.com", "Ann <ann@example.com>\nbob@", "c@example.com,Carol"),
    fc.array(
      fc.oneof(
        fc.emailAddress(),
        fc.record({ email: fc.emailAddress(), name: fc.string({ maxLength: 20 }) }),
      ),
      { minLength: 1, maxLength: 5 },
    ),
  ),
  from: fc.option(fc.constantFrom("Sender <sender@example.com>", "sender@example.com"), { nil: undefined }),
  sendAt: fc.option(
    fc
      .date({
        min: new Date(Date.now() - 3600_000),
        max: new Date(Date.now() + 5 * 365 * 24 * 3600_000),
        noInvalidDate: true,
      })
      .map((date) => date.toISOString()),
    { nil: undefined },
  ),
  runAt: fc
    .date({
      min: new Date(Date.now() - 3600_000),
      max: new Date(Date.now() + 30 * 24 * 3600_000),
      noInvalidDate: true,
    })
    .map((date) => date.toISOString()),
  name: fc.option(fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }), { nil: undefined }),
  subject: fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }),
  text: fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }),
  html: fc.option(
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }).map((t) => `<p>${t}</p>`),
    {
      nil: undefined,
    },
  ),
  priority: fc.option(fc.integer({ min: -100, max: 100 }), { nil: undefined }),
  input: fc.record({ a: fc.integer(), b: fc.integer() }),
  username: fc.constant("admin"),
};
const PATH_HINTS: Record<string, fc.Arbitrary<string>> = {
  // Task names and job ids: the registered task, and ids of the shape the API hands out.
  name: fc.constantFrom("add", "nosuch"),
  id: fc.oneof(fc.integer({ min: 1, max: 30 }).map(String), fc.constantFrom("default:1", "email:1", "x:y")),
};

function validValue(schema: Schema, name?: string): fc.Arbitrary<unknown> {
  const hint = name === undefined ? undefined : HINTS[name];
  if (hint) return hint;
  const own = fromSchema(schema);
  return schema.nullable ? fc.option(own, { nil: null }) : own;
}

function fromSchema(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((branch) => fromSchema(branch)));
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (types.length > 1) return fc.oneof(...types.map((type) => fromSchema({ ...schema, type })));
  switch (types[0]) {
    case "integer": {
      const min = schema.minimum ?? -(2 ** 31);
      const max = schema.maximum ?? 2 ** 31 - 1;
      // Small ids are the ones that exist.
      return fc.oneof(
        fc.integer({ min: Math.max(min, 1), max: Math.max(Math.min(max, 30), min) }),
        fc.integer({ min, max }),
      );
    }
    case "number":
      return fc.double({ noNaN: true });
    case "boolean":
      return fc.boolean();
    case "string":
      if (schema.format === "date-time") return HINTS.runAt!;
      return fc.string({ unit: "grapheme", maxLength: Math.min(schema.maxLength ?? 40, 40) });
    case "array":
      return fc.array(schema.items ? fromSchema(schema.items) : fc.string({ maxLength: 10 }), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.min(schema.maxItems ?? 4, 4),
      });
    case "object": {
      const properties = schema.properties ?? {};
      if (Object.keys(properties).length === 0) return fc.constant({});
      const record: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [key, property] of Object.entries(properties)) record[key] = validValue(property, key);
      // A field with a hint is one a real client sends: a campaign without a subject tests little.
      const requiredKeys = [
        ...new Set([...(schema.required ?? []), ...Object.keys(properties).filter((k) => k in HINTS)]),
      ];
      return fc.record(record, { requiredKeys });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Percent-encodes the UTF-8 bytes (a lone surrogate becomes U+FFFD, as any client would send it). */
function encode(value: unknown): string {
  const text =
    typeof value === "string"
      ? value
      : value instanceof Huge
        ? value.toJSON()
        : (JSON.stringify(value) ?? String(value));
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const UNKNOWN_NAMES = ["send_at", "extra", "__proto__", "constructor", "a\u0000b"];

/** Recipients with hostile names and lines: what a NUL or a lone surrogate would reach the store in. */
const hostileRecipients = fc.oneof(
  fc.array(fc.record({ email: fc.emailAddress(), name: shortHostileString }), { minLength: 1, maxLength: 3 }),
  fc.array(shortHostileString, { minLength: 1, maxLength: 3 }).map((lines) => lines.join("\n")),
  fc
    .array(shortHostileString, { minLength: 1, maxLength: 3 })
    .map((names) => names.map((n) => `${n} <x@example.com>`)),
);
/** What replaces one field: any hostile value, or bytes (for the file). */
const mutationValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileValue },
  { weight: 2, arbitrary: hostileRecipients },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
);

type Body =
  | { kind: "none" }
  | { kind: "json"; value: unknown }
  | { kind: "raw"; contentType: string; payload: string | Buffer }
  | { kind: "multipart"; parts: Part[] };

/** Bodies no schema describes: malformed, deep, empty, not UTF-8, of another type. */
const rawBody: fc.Arbitrary<Body> = fc.oneof(
  fc
    .string({ unit: hostileChar, maxLength: 60 })
    .map((payload): Body => ({ kind: "raw", contentType: "application/json", payload })),
  fc.constantFrom<Body>(
    { kind: "raw", contentType: "application/json", payload: "[".repeat(100_000) },
    { kind: "raw", contentType: "application/json", payload: `${"[".repeat(5_000)}${"]".repeat(5_000)}` },
    { kind: "raw", contentType: "application/json", payload: '{"a":1,}' },
    { kind: "raw", contentType: "application/json", payload: '{"__proto__":{"admin":true}}' },
    { kind: "raw", contentType: "application/json", payload: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]) },
    { kind: "raw", contentType: "application/json", payload: "" },
    { kind: "raw", contentType: "text/plain", payload: "hello" },
    { kind: "raw", contentType: "application/xml", payload: "<a/>" },
    { kind: "raw", contentType: "multipart/form-data", payload: "no boundary" },
    { kind: "raw", contentType: "multipart/form-data; boundary=x", payload: "--x\r\nbroken" },
  ),
);

const asText = (value: unknown) =>
  typeof value === "string" ? value : value instanceof Huge ? value.toJSON() : (JSON.stringify(value) ?? "");

function validBodyFor(operation: Operation): fc.Arbitrary<Body> {
  const json = (operation.body ? validValue(operation.body) : fc.constant({})).map((value): Body => ({
    kind: "json",
    value,
  }));
  const options: fc.Arbitrary<Body>[] = [json];
  if (operation.method === "POST") options.push(fc.constant<Body>({ kind: "none" }));
  if (operation.method === "POST" && operation.path === "/api/campaigns" && operation.body?.properties) {
    options.push(multipartCampaign(operation.body.properties));
  }
  return operation.method === "GET" ? fc.constant<Body>({ kind: "none" }) : fc.oneof(...options);
}

/** The campaign's JSON fields as text parts, and the recipients as a file or a field. */
function multipartCampaign(properties: Record<string, Schema>): fc.Arbitrary<Body> {
  const fields = Object.entries(properties)
    .filter(([name]) => name !== "recipients")
    .map(([name, schema]) =>
      fc.option(
        validValue(schema, name)
          .filter((value) => value !== undefined && value !== null)
          .map((value): Part => [name, asText(value)]),
        { nil: undefined },
      ),
    );
  const file = fc.oneof(
    fc.constantFrom(
      "email,name\na@example.com,Ann\n",
      "\uFEFFemail\nb@example.com\n",
      "one@example.com\nTwo <two@example.com>\n",
      'email,name\nc@example.com,"Nguyễn, Lan"\n',
    ),
    fc.constant(Buffer.from("\uFEFFemail,name\r\nd@example.com,Dương\r\n", "utf16le")),
  );
  const recipients = fc.oneof(
    file.map((content): Part => ["file", { filename: "list.csv", content }]),
    fc
      .array(fc.emailAddress(), { minLength: 1, maxLength: 4 })
      .map((emails): Part => ["recipients", emails.join("\n")]),
  );
  return fc.tuple(fc.tuple(...fields), recipients).map(([given, list]): Body => ({
    kind: "multipart",
    parts: [...given.filter((part): part is Part => part !== undefined), list],
  }));
}

interface Request {
  url: string;
  body: Body;
}

/**
 * A valid request, then (mostly) one thing made hostile: one path or query parameter, one body
 * or multipart field, an unknown field, the file, or the whole body. A request hostile in many
 * places at once would be refused by its first problem and test little else.
 */
function requestFor(operation: Operation): fc.Arbitrary<Request> {
  const pathParameters = operation.parameters.filter((p) => p.in === "path");
  const queryParameters = operation.parameters.filter((p) => p.in === "query");
  const path = fc.tuple(
    ...pathParameters.map((p) => {
      const hint = PATH_HINTS[p.name];
      return p.schema.type === "integer" || !hint ? fromSchema(p.schema) : hint;
    }),
  );
  const query = fc.tuple(
    ...queryParameters.map((p) => fc.option(validValue(p.schema, p.name), { nil: undefined })),
  );
  const mutation = fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    {
      weight: 6,
      arbitrary: fc.record({ kind: fc.constant("field" as const), slot: fc.nat(), value: mutationValue }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("body" as const), body: rawBody }) },
  );
  return fc
    .tuple(path, query, validBodyFor(operation), mutation)
    .map(([pathValues, queryValues, valid, change]) => {
      const values: unknown[] = [...pathValues];
      const queryPairs: [string, unknown][] = queryParameters.map((p, index) => [p.name, queryValues[index]]);
      let body = valid;
      if (change?.kind === "body") body = change.body;
      if (change?.kind === "field") {
        const bodyFields =
          body.kind === "json" && operation.body?.properties ? Object.keys(operation.body.properties) : [];
        const partNames = body.kind === "multipart" ? [...body.parts.map(([name]) => name), "file"] : [];
        const slots = values.length + queryPairs.length + 1 + bodyFields.length + partNames.length + 1;
        let slot = change.slot % slots;
        const unknownName = UNKNOWN_NAMES[change.slot % UNKNOWN_NAMES.length]!;
        if (slot < values.length) values[slot] = change.value;
        else if ((slot -= values.length) < queryPairs.length) queryPairs[slot]![1] = change.value;
        else if ((slot -= queryPairs.length) === 0) queryPairs.push([unknownName, change.value]);
        else if ((slot -= 1) < bodyFields.length && body.kind === "json") {
          const base = body.value && typeof body.value === "object" ? body.value : {};
          body = { kind: "json", value: { ...base, [bodyFields[slot]!]: change.value } };
        } else if ((slot -= bodyFields.length) < partNames.length && body.kind === "multipart") {
          const name = partNames[slot]!;
          const replacement: Part =
            name === "file"
              ? [
                  "file",
                  {
                    filename: "list.csv",
                    content: change.value instanceof Uint8Array ? change.value : asText(change.value),
                  },
                ]
              : [name, asText(change.value)];
          body = { kind: "multipart", parts: [...body.parts.filter(([n]) => n !== name), replacement] };
        } else if (
          body.kind === "json" &&
          body.value &&
          typeof body.value === "object" &&
          !Array.isArray(body.value)
        ) {
          body = { kind: "json", value: { ...body.value, [unknownName]: change.value } };
        } else if (body.kind === "multipart") {
          body = { kind: "multipart", parts: [...body.parts, [unknownName, asText(change.value)]] };
        } else body = { kind: "json", value: change.value };
      }
      let url = operation.path;
      pathParameters.forEach((p, index) => {
        url = url.replace(`{${p.name}}`, encode(values[index]));
      });
      const pairs: string[] = [];
      for (const [name, value] of queryPairs) {
        if (value === undefined) continue;
        // An array is what a repeated parameter parses to.
        for (const item of Array.isArray(value) ? value : [value])
          pairs.push(`${encode(name)}=${encode(item)}`);
      }
      return { url: pairs.length > 0 ? `${url}?${pairs.join("&")}` : url, body };
    });
}

async function injectOptions(method: Operation["method"], request: Request): Promise<InjectOptions> {
  const { body } = request;
  switch (body.kind) {
    case "none":
      return { method, url: request.url };
    case "json":
      return {
        method,
        url: request.url,
        payload: JSON.stringify(body.value) ?? "null",
        headers: { "content-type": "application/json" },
      };
    case "raw":
      return {
        method,
        url: request.url,
        payload: body.payload,
        headers: { "content-type": body.contentType },
      };
    case "multipart":
      return { method, url: request.url, ...(await multipart(body.parts)) };
  }
}

function describeRequest(method: string, request: Request): string {
  const body = JSON.stringify(request.body) ?? "";
  return `${method} ${request.url.slice(0, 300)} ${body.slice(0, 600)}`;
}

describe("fuzzing every route of the OpenAPI document", () => {
  let api: TestApi;
  let operations: Operation[];
  const statuses = new Map<number, number>();

  beforeAll(async () => {
    api = await openTestApi();
    await api.app.ready();
    // Routes that can revoke or delete the fuzzer's own account would leave the rest unreached;
    // roles.test.ts sends them bad input instead.
    const revoking = new Set([
      "POST /api/auth/logout",
      "POST /api/auth/password",
      "PATCH /api/users/{id}",
      "DELETE /api/users/{id}",
    ]);
    operations = operationsOf(api.app.swagger() as { paths: Record<string, Record<string, unknown>> }).filter(
      (o) => !revoking.has(`${o.method} ${o.path}`),
    );
    // Something for the id-taking routes to find.
    const created = await api.call({
      method: "POST",
      url: "/api/campaigns",
      payload: { subject: "Seed", text: "Hi", recipients: ["seed1@example.com", "seed2@example.com"] },
    });
    expect(created.statusCode, created.body).toBe(202);
  }, 120_000);

  afterAll(async () => {
    await api?.close();
  });

  it("covers the routes it should", () => {
    const routes = operations.map((o) => `${o.method} ${o.path}`);
    expect(routes).toEqual(
      expect.arrayContaining([
        "POST /api/auth/login",
        "POST /api/campaigns",
        "GET /api/campaigns",
        "GET /api/campaigns/{id}",
        "GET /api/campaigns/{id}/recipients",
        "GET /api/campaigns/{id}/recipients.csv",
        "POST /api/campaigns/{id}/retry",
        "GET /api/emails",
        "POST /api/tasks/{name}",
        "GET /api/tasks/{id}",
        "GET /api/messages/{id}",
      ]),
    );
  });

  it(`answers ${RUNS} generated requests per route without a 5xx`, async () => {
    for (const operation of operations) {
      await fc.assert(
        fc.asyncProperty(requestFor(operation), async (request) => {
          const options = await injectOptions(operation.method, request);
          const response: LightMyRequestResponse = await api.call(options);
          statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
          const what = `${describeRequest(operation.method, request)}\n→ ${response.statusCode} ${response.body.slice(0, 500)}`;
          expect(response.statusCode, what).toBeLessThan(500);
          if (response.statusCode >= 400) {
            const error = expectError(
              response,
              response.statusCode,
              response.json<{ error: { code: string } }>().error.code,
            );
            expect(error.code, what).not.toBe("internal");
          }
        }),
        { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
      );
    }
    // Both kinds of request were made: some were accepted, some refused.
    const count = (from: number, to: number) =>
      [...statuses].filter(([status]) => status >= from && status < to).reduce((sum, [, n]) => sum + n, 0);
    expect(count(200, 300), JSON.stringify([...statuses])).toBeGreaterThan(0);
    expect(count(400, 500), JSON.stringify([...statuses])).toBeGreaterThan(0);
  }, 300_000);

  it("is healthy afterwards: /healthz, a list, a new campaign and a task all work", async () => {
    expect((await api.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await api.app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(200);
    const list = await api.call({ method: "GET", url: "/api/campaigns?limit=5" });
    expect(list.statusCode, list.body).toBe(200);
    const created = await api.call({
      method: "POST",
      url: "/api/campaigns",
      payload: { subject: "After fuzzing", text: "Hi {{name}}", recipients: "Ann <after@example.com>" },
    });
    expect(created.statusCode, created.body).toBe(202);
    const task = await api.call({
      method: "POST",
      url: "/api/tasks/add",
      payload: { input: { a: 1, b: 2 } },
    });
    expect(task.statusCode, task.body).toBe(202);
  });
});
