/**
 * What every request's input is checked for before a route sees it, whatever the route: a JSON
 * body that is UTF-8 and parses (or a 400 saying where it does not), strings PostgreSQL can store
 * (no NUL, no lone surrogate) in the body, the querystring and the path, nesting a person could
 * write, and strict types in bodies (querystrings and path parameters are text, so they alone are
 * coerced: "10" is a number there, ["admin"] is never a string anywhere).
 *
 * Never: decides which fields a route takes (each route's schema does, with the pieces below) or
 * reads the store.
 */
import { AjvCompiler } from "@fastify/ajv-compiler";
import type { FastifyInstance } from "fastify";
import { invalidUtf8Index, unstorableChar } from "../mail/recipients/parse.js";
import { ApiError } from "./errors.js";

/** The largest id, cursor or count a route takes: PostgreSQL's `integer`. */
export const MAX_ID = 2_147_483_647;
/** Deeper JSON is refused: nothing Lovage takes needs it, and walking it could exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

export const idParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "integer", minimum: 1, maximum: MAX_ID } },
} as const;

/** The querystring of a route that takes none: any parameter is a 400 naming it. */
// `properties: {}`: without it, @fastify/swagger reads the schema's own keywords as parameters.
export const noQuery = { type: "object", additionalProperties: false, properties: {} } as const;

/** The body of a route that takes none: nothing, `null` or `{}`; a field is a 400 naming it. */
export const noBody = {
  content: {
    "application/json": { schema: { type: ["object", "null"], additionalProperties: false } },
  },
} as const;

const fromPool = AjvCompiler();
/** Fastify's `ajv` server option, in Ajv's JSON Schema mode (not JTD). */
type AjvOptions = Extract<Parameters<typeof fromPool>[1], { mode?: never }>;

/**
 * Fastify's own Ajv compiler, twice: bodies without type coercion, and the querystring, path and
 * headers with it, since their values arrive as text.
 */
export function buildValidator(
  externalSchemas: Parameters<typeof fromPool>[0],
  serverOptions?: Parameters<typeof fromPool>[1],
): ReturnType<typeof fromPool> {
  // Lovage never sets `mode: "JTD"`.
  const options = (serverOptions ?? {}) as AjvOptions;
  const withCoercion = (coerceTypes: boolean) =>
    fromPool(externalSchemas, { ...options, customOptions: { ...options.customOptions, coerceTypes } });
  const strict = withCoercion(false);
  const coercing = withCoercion(true);
  return (route) => (route.httpPart === "body" ? strict : coercing)(route);
}

export interface InputProblem {
  field: string;
  reason: string;
}

/**
 * The first string (or key) in `value` that cannot be stored, or nesting deeper than
 * MAX_JSON_DEPTH, with its path (`body.recipients[2].name`) and, in a multi-line string, its line.
 * Iterative, so that deep input cannot overflow the stack.
 */
export function findUnstorable(value: unknown, root: string): InputProblem | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: root, depth: 0 }];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const { value: current, path, depth } = next;
    if (typeof current === "string") {
      const bad = unstorableChar(current);
      if (bad) {
        const line = countLines(current.slice(0, bad.index));
        return { field: path, reason: line > 1 ? `line ${line}: ${bad.reason}` : bad.reason };
      }
      continue;
    }
    if (typeof current !== "object" || current === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      return { field: path, reason: `nested deeper than ${MAX_JSON_DEPTH} levels` };
    }
    if (Array.isArray(current)) {
      for (let index = current.length - 1; index >= 0; index -= 1) {
        stack.push({ value: current[index] as unknown, path: `${path}[${index}]`, depth: depth + 1 });
      }
      continue;
    }
    const keys = Object.keys(current);
    for (let index = keys.length - 1; index >= 0; index -= 1) {
      const key = keys[index]!;
      const keyPath = `${path}${fieldSuffix(key)}`;
      const bad = unstorableChar(key);
      if (bad) return { field: keyPath, reason: `the field name ${bad.reason}` };
      const child = (current as Record<string, unknown>)[key];
      // As Fastify's own parser refused them: JSON.parse makes these plain keys, but a later
      // Object.assign or merge would set a prototype through them.
      if (key === "__proto__") return { field: keyPath, reason: "a field named __proto__ is not allowed" };
      if (
        key === "constructor" &&
        typeof child === "object" &&
        child !== null &&
        Object.hasOwn(child, "prototype")
      ) {
        return { field: keyPath, reason: "a constructor.prototype field is not allowed" };
      }
      stack.push({ value: child, path: keyPath, depth: depth + 1 });
    }
  }
  return undefined;
}

function fieldSuffix(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function countLines(text: string): number {
  let lines = 1;
  for (let index = text.indexOf("\n"); index !== -1; index = text.indexOf("\n", index + 1)) lines += 1;
  return lines;
}

export function unstorableError(problem: InputProblem): ApiError {
  return new ApiError("bad_request", `${problem.field}: ${problem.reason}`, [problem]);
}

/**
 * Registers the JSON body parser and the check of the querystring and path parameters. The
 * parser replaces Fastify's, whose errors say neither where the JSON is broken nor why.
 */
export function registerInputChecks(app: FastifyInstance): void {
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_request, body: Buffer, done) => {
    try {
      done(null, parseJsonBody(body));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  app.addHook("preValidation", async (request) => {
    const problem = findUnstorable(request.params, "params") ?? findUnstorable(request.query, "querystring");
    if (problem) throw unstorableError(problem);
    const schema = request.routeOptions.schema;
    const integers = [
      ...integerTextProblems(schema?.params, request.params, "params"),
      ...integerTextProblems(schema?.querystring, request.query, "querystring"),
    ];
    if (integers.length > 0) {
      throw new ApiError(
        "bad_request",
        `invalid request: ${integers.map((p) => `${p.field}: ${p.reason}`).join("; ")}`,
        integers,
      );
    }
  });
}

const DECIMAL_INTEGER = /^[+-]?\d+$/;

/**
 * Integers of the path and querystring written as anything but decimal digits. Ajv's coercion
 * would take "0x10" as 16, " 5" as 5, and "Infinity" or "1e400" as Infinity, which then skips
 * every bound (`isFinite` guards them) and reaches PostgreSQL as "Infinity".
 */
function integerTextProblems(schema: unknown, values: unknown, part: string): InputProblem[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  if (!properties || typeof values !== "object" || values === null) return [];
  const problems: InputProblem[] = [];
  for (const [name, value] of Object.entries(values)) {
    if (properties[name]?.type !== "integer" || typeof value !== "string" || DECIMAL_INTEGER.test(value))
      continue;
    problems.push({
      field: `${part}${fieldSuffix(name)}`,
      reason: `must be a whole number written in digits, got ${JSON.stringify(value.slice(0, 40))}`,
    });
  }
  return problems;
}

export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) {
    throw new ApiError("bad_request", "the body is empty: send a JSON value, or no content-type");
  }
  const badByte = invalidUtf8Index(body);
  if (badByte !== -1) {
    throw new ApiError(
      "bad_request",
      `the body is not UTF-8: byte 0x${body[badByte]!.toString(16).toUpperCase().padStart(2, "0")} at byte offset ${badByte}`,
      { offset: badByte },
    );
  }
  const text = body.toString("utf8");
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (error) {
    const where = locateJsonError(text);
    if (!where) throw new ApiError("bad_request", `invalid JSON: ${(error as Error).message}`);
    const { line, column } = lineAndColumn(text, where.position);
    throw new ApiError(
      "bad_request",
      `invalid JSON at line ${line}, column ${column} (character ${where.position}): ${where.reason}`,
      { position: where.position, line, column },
    );
  }
  const problem = findUnstorable(value, "body");
  if (problem) throw unstorableError(problem);
  return value;
}

function lineAndColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position);
  return { line: countLines(before), column: position - before.lastIndexOf("\n") };
}

/**
 * Where and why `text` is not JSON (RFC 8259), for a message a person can act on: V8's own
 * messages give no position for most errors and quote the input instead. Iterative: a container
 * stack, no recursion. `undefined` when it finds nothing wrong.
 */
export function locateJsonError(text: string): { position: number; reason: string } | undefined {
  const containers: ("object" | "array")[] = [];
  let at = 0;
  const fail = (reason: string, position = at) => ({ position, reason });
  const skipSpace = () => {
    while (at < text.length && " \t\n\r".includes(text[at]!)) at += 1;
  };
  const describe = (position: number) =>
    position >= text.length
      ? "the end of the body"
      : JSON.stringify(String.fromCodePoint(text.codePointAt(position)!));

  type Step = "value" | "key" | "after";
  let step: Step = "value";
  for (;;) {
    skipSpace();
    if (step === "value") {
      const char = text[at];
      if (char === undefined) return fail("the body ends where a value was expected");
      if (char === "{" || char === "[") {
        containers.push(char === "{" ? "object" : "array");
        at += 1;
        skipSpace();
        const close = char === "{" ? "}" : "]";
        if (text[at] === close) {
          containers.pop();
          at += 1;
          step = "after";
        } else step = char === "{" ? "key" : "value";
        continue;
      }
      if (char === '"') {
        const problem = scanString();
        if (problem) return problem;
      } else if (char === "-" || (char >= "0" && char <= "9")) {
        const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(at, at + 400));
        if (!match) return fail(`a number was expected, found ${describe(at + 1)}`, at + 1);
        at += match[0].length;
      } else {
        const literal = ["true", "false", "null"].find((word) => text.startsWith(word, at));
        if (!literal) {
          const word = /^[A-Za-z]+/.exec(text.slice(at, at + 20))?.[0];
          return fail(
            word
              ? `unexpected word "${word}" (strings need double quotes; literals are true, false and null)`
              : `unexpected ${describe(at)} where a value was expected`,
          );
        }
        at += literal.length;
      }
      step = "after";
      continue;
    }
    if (step === "key") {
      if (text[at] !== '"') {
        return fail(`a field name in double quotes was expected, found ${describe(at)}`);
      }
      const problem = scanString();
      if (problem) return problem;
      skipSpace();
      if (text[at] !== ":") return fail(`":" was expected after the field name, found ${describe(at)}`);
      at += 1;
      step = "value";
      continue;
    }
    const container = containers.at(-1);
    if (container === undefined) {
      return at < text.length ? fail(`unexpected ${describe(at)} after the JSON value`) : undefined;
    }
    const close = container === "object" ? "}" : "]";
    if (text[at] === ",") {
      at += 1;
      step = container === "object" ? "key" : "value";
    } else if (text[at] === close) {
      containers.pop();
      at += 1;
    } else {
      return fail(`"," or "${close}" was expected, found ${describe(at)}`);
    }
  }

  function scanString(): { position: number; reason: string } | undefined {
    const start = at;
    at += 1;
    for (;;) {
      const char = text[at];
      if (char === undefined) return fail("a string is never closed", start);
      if (char === '"') {
        at += 1;
        return undefined;
      }
      if (char === "\\") {
        const escape = text[at + 1];
        if (escape === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(at + 2, at + 6))) {
            return fail("\\u must be followed by 4 hexadecimal digits");
          }
          at += 6;
        } else if (escape !== undefined && '"\\/bfnrt'.includes(escape)) at += 2;
        else return fail(`invalid escape ${JSON.stringify(`\\${escape ?? ""}`)} in a string`);
        continue;
      }
      if (char < " ") return fail("a control character (such as a line break) must be escaped in a string");
      at += 1;
    }
  }
}
