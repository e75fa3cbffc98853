import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  invalidUtf8Index,
  parseJsonRecipients,
  parsePasted,
  parseUpload,
  validateEmail,
  type ParseItem,
  type Recipient,
  type Rejected,
} from "../../src/mail/recipients/parse.js";

function accepted(items: ParseItem[]): Recipient[] {
  return items.flatMap((item) => (item.ok ? [item.recipient] : []));
}

function rejected(items: ParseItem[]): Rejected[] {
  return items.flatMap((item) => (item.ok ? [] : [item.rejected]));
}

async function collect(items: AsyncIterable<ParseItem>): Promise<ParseItem[]> {
  const all: ParseItem[] = [];
  for await (const item of items) all.push(item);
  return all;
}

/** A byte stream cut every `chunkBytes`, so chunks split multi-byte characters, CRLFs and the BOM. */
function bytesOf(text: string, chunkBytes = 7): Readable {
  const bytes = Buffer.from(text, "utf8");
  const chunks: Buffer[] = [];
  for (let start = 0; start < bytes.length; start += chunkBytes) {
    chunks.push(bytes.subarray(start, start + chunkBytes));
  }
  return Readable.from(chunks);
}

describe("validateEmail", () => {
  it("trims, lowercases the dedupe key, and keeps the local part's case in the address sent to", () => {
    expect(validateEmail("  Bob.Smith+News@Example.COM \t")).toEqual({
      ok: true,
      email: "bob.smith+news@example.com",
      address: "Bob.Smith+News@example.com",
    });
  });

  it("accepts letters of any script in the local part and the domain", () => {
    expect(validateEmail("Nguyễn.An@Ví-Dụ.VN")).toEqual({
      ok: true,
      email: "nguyễn.an@ví-dụ.vn",
      address: "Nguyễn.An@ví-dụ.vn",
    });
    expect(validateEmail("用户@例子.广告")).toEqual({
      ok: true,
      email: "用户@例子.广告",
      address: "用户@例子.广告",
    });
  });

  it("gives one key for an accented letter typed as one or as two code points", () => {
    expect(validateEmail("e\u0301@x.example")).toEqual(validateEmail("\u00e9@x.example"));
  });

  it.each([
    ["", "empty"],
    ["   ", "empty"],
    ["bob.example.com", "missing @"],
    ["@example.com", "missing local part"],
    ["bob@", "missing domain"],
    ["bob@home@example.com", "more than one @"],
    ["bob smith@example.com", "whitespace inside the address"],
    ["bo,b@example.com", 'invalid character in local part: ","'],
    ["<bob>@example.com", 'invalid character in local part: "<"'],
    ['"bob"@example.com', "quoted local parts are not supported"],
    [".bob@example.com", "local part cannot start or end with a dot"],
    ["bo..b@example.com", "local part has two dots in a row"],
    ["bob@localhost", "domain needs a dot, like localhost.com"],
    ["bob@gmail,com", 'invalid domain label: "gmail,com" contains ","'],
    ["bob@exa_mple.com", 'invalid domain label: "exa_mple" contains "_"'],
    [
      "bob@example..com",
      'invalid domain label: empty (look for ".." or a dot at the start or end of the domain)',
    ],
    [
      "bob@example.com.",
      'invalid domain label: empty (look for ".." or a dot at the start or end of the domain)',
    ],
    ["bob@-example.com", 'invalid domain label: "-example" cannot start or end with "-"'],
    ["bob@10.0.0.1", 'invalid domain label: the last label "1" cannot be all digits'],
    [`bob@${"a".repeat(64)}.com`, "invalid domain label: longer than 63 characters (it has 64)"],
    [`${"b".repeat(65)}@example.com`, "local part longer than 64 characters (it has 65)"],
    [`bob@${"a.".repeat(124)}com`, "address longer than 254 characters (it has 255)"],
  ])("rejects %j as %j", (raw, reason) => {
    expect(validateEmail(raw)).toEqual({ ok: false, reason });
  });

  it("accepts an address of exactly 254 characters with a 64-character local part", () => {
    const email = `${"b".repeat(64)}@${"a".repeat(63)}.${"c".repeat(63)}.${"d".repeat(57)}.com`;
    expect(email).toHaveLength(254);
    expect(validateEmail(email)).toEqual({ ok: true, email, address: email });
  });
});

describe("parsePasted", () => {
  it("reports the exact line and reason of 10 malformed lines among 1,000 valid ones", () => {
    const malformed = new Map<number, [string, string]>([
      [1, ["bob@", "missing domain"]],
      [14, ["alice.example.com", "missing @"]],
      [100, ["@example.com", "missing local part"]],
      [257, ["carol@localhost", "domain needs a dot, like localhost.com"]],
      [400, ["dave@@example.com", "more than one @"]],
      [512, ["e(ve)@example.com", 'invalid character in local part: "("']],
      [600, ["frank@exa_mple.com", 'invalid domain label: "exa_mple" contains "_"']],
      [777, ["Grace <grace@example.com", 'missing ">" after the address: expected Name <email>']],
      [901, ["heidi@example.com, ivan@example.com", "two addresses on one line: put one recipient per line"]],
      [
        1010,
        [
          "Judy judy@example.com",
          'whitespace inside the address: to give a name, write "Name <email>" or "email,name"',
        ],
      ],
    ]);
    const lines: string[] = [];
    for (let line = 1, valid = 0; line <= 1010; line += 1) {
      const bad = malformed.get(line);
      if (bad) lines.push(bad[0]);
      else lines.push(`user${(valid += 1)}@example.com`);
    }

    const items = parsePasted(lines.join("\n"));

    expect(accepted(items)).toHaveLength(1000);
    expect(accepted(items)[0]).toEqual({ line: 2, email: "user1@example.com", fields: {} });
    expect(accepted(items).at(-1)).toEqual({ line: 1009, email: "user1000@example.com", fields: {} });
    expect(rejected(items)).toEqual(
      [...malformed].map(([line, [value, reason]]) => ({ line, value, reason })),
    );
  });

  it("reads Name <email>, with the name quoted or not", () => {
    const items = parsePasted(
      ["Bob Smith <Bob@Example.com>", '"Smith, Alice" <alice@example.com>', "<carol@example.com>"].join("\n"),
    );
    expect(accepted(items)).toEqual([
      { line: 1, email: "bob@example.com", address: "Bob@example.com", fields: { name: "Bob Smith" } },
      { line: 2, email: "alice@example.com", fields: { name: "Smith, Alice" } },
      { line: 3, email: "carol@example.com", fields: {} },
    ]);
  });

  it("reads email,name with a comma, a semicolon or a tab", () => {
    const items = parsePasted(
      "bob@example.com,Bob\nalice@example.com; Alice Liddell\ncarol@example.com\tCarol\ndan@example.com,",
    );
    expect(accepted(items)).toEqual([
      { line: 1, email: "bob@example.com", fields: { name: "Bob" } },
      { line: 2, email: "alice@example.com", fields: { name: "Alice Liddell" } },
      { line: 3, email: "carol@example.com", fields: { name: "Carol" } },
      { line: 4, email: "dan@example.com", fields: {} },
    ]);
  });

  it("keeps Vietnamese names intact", () => {
    const items = parsePasted("Nguyễn Văn An <an@vi.example>\ntrần.thị.bình@vi.example,Trần Thị Bình");
    expect(accepted(items)).toEqual([
      { line: 1, email: "an@vi.example", fields: { name: "Nguyễn Văn An" } },
      { line: 2, email: "trần.thị.bình@vi.example", fields: { name: "Trần Thị Bình" } },
    ]);
  });

  it("skips blank lines and # comments but counts them in line numbers", () => {
    const items = parsePasted("# newsletter list\n\n   \nbob@example.com\n\nbroken\n");
    expect(items).toEqual([
      { ok: true, recipient: { line: 4, email: "bob@example.com", fields: {} } },
      { ok: false, rejected: { line: 6, value: "broken", reason: "missing @" } },
    ]);
  });

  it("handles CRLF line ends and a leading BOM", () => {
    const items = parsePasted("\uFEFFbob@example.com\r\n\r\nAlice <alice@example.com>\r\nbad\r\n");
    expect(items).toEqual([
      { ok: true, recipient: { line: 1, email: "bob@example.com", fields: {} } },
      { ok: true, recipient: { line: 3, email: "alice@example.com", fields: { name: "Alice" } } },
      { ok: false, rejected: { line: 4, value: "bad", reason: "missing @" } },
    ]);
  });

  it("says when the name comes before the address", () => {
    expect(rejected(parsePasted("Bob,bob@example.com"))).toEqual([
      { line: 1, value: "Bob,bob@example.com", reason: "the address must come first: expected email,name" },
    ]);
  });

  it("rejects text after the closing > and a second <…> on the line", () => {
    expect(
      rejected(parsePasted("Bob <bob@example.com> thanks\nA <a@example.com> B <b@example.com>")),
    ).toEqual([
      {
        line: 1,
        value: "Bob <bob@example.com> thanks",
        reason: 'unexpected text after ">": expected Name <email> alone on the line',
      },
      {
        line: 2,
        value: "A <a@example.com> B <b@example.com>",
        reason: "more than one <…> on the line: put one recipient per line",
      },
    ]);
  });

  it("shows a rejected line trimmed and cut to 200 characters", () => {
    const long = `   ${"x".repeat(500)}   `;
    const [item] = rejected(parsePasted(long));
    expect(item?.value).toBe("x".repeat(200));
  });
});

describe("parseJsonRecipients", () => {
  it("says so when the list is empty or holds only blank lines and comments", () => {
    expect(() => parseJsonRecipients("")).toThrow(/^recipients is empty$/);
    expect(() => parseJsonRecipients("  \n\n")).toThrow(/^recipients is empty$/);
    expect(() => parseJsonRecipients("# just a comment\n")).toThrow(
      /^recipients has no recipient: every line is blank or a # comment$/,
    );
    expect(() => parseJsonRecipients([])).toThrow(/^recipients is an empty list$/);
  });

  it("parses an array of strings like pasted lines, numbered by position", () => {
    const items = parseJsonRecipients(["bob@example.com", "Nguyễn Văn An <an@vi.example>", "bob@", ""]);
    expect(items).toEqual([
      { ok: true, recipient: { line: 1, email: "bob@example.com", fields: {} } },
      { ok: true, recipient: { line: 2, email: "an@vi.example", fields: { name: "Nguyễn Văn An" } } },
      { ok: false, rejected: { line: 3, value: "bob@", reason: "missing domain" } },
      { ok: false, rejected: { line: 4, value: "", reason: "empty" } },
    ]);
  });

  it("parses objects, turning numbers and booleans into strings and skipping nulls", () => {
    const items = parseJsonRecipients([
      { email: "Bob@Example.com", name: "Bob", Plan: "pro", seats: 3, trial: false, note: null },
    ]);
    expect(accepted(items)).toEqual([
      {
        line: 1,
        email: "bob@example.com",
        address: "Bob@example.com",
        fields: { name: "Bob", plan: "pro", seats: "3", trial: "false" },
      },
    ]);
  });

  it("rejects objects with a nested field, a missing email or a non-string email", () => {
    const items = parseJsonRecipients([
      { email: "a@example.com", address: { city: "Huế" } },
      { name: "Bob" },
      { email: 42 },
      7,
    ]);
    expect(rejected(items)).toEqual([
      {
        line: 1,
        value: '{"email":"a@example.com","address":{"city":"Huế"}}',
        reason: 'field "address" must be a string, number or boolean, got an object',
      },
      { line: 2, value: '{"name":"Bob"}', reason: 'missing "email" field' },
      { line: 3, value: '{"email":42}', reason: '"email" must be a string, got number' },
      {
        line: 4,
        value: "7",
        reason: 'expected an address string or an object with an "email" field, got number',
      },
    ]);
  });

  it("parses a string as pasted text", () => {
    expect(accepted(parseJsonRecipients("bob@example.com,Bob\n\nalice@example.com"))).toEqual([
      { line: 1, email: "bob@example.com", fields: { name: "Bob" } },
      { line: 3, email: "alice@example.com", fields: {} },
    ]);
  });

  it("throws when recipients is neither a string nor an array", () => {
    expect(() => parseJsonRecipients({ email: "bob@example.com" })).toThrow(
      "recipients must be a string or an array, got an object",
    );
    expect(() => parseJsonRecipients(null)).toThrow("recipients must be a string or an array, got null");
  });
});

describe("parseUpload", () => {
  it("reads a CSV with quoted commas and a quoted newline, numbering the lines after it right", async () => {
    const csv = [
      "email,name,company",
      'bob@example.com,"Smith, Bob","Acme, Inc."',
      'alice@example.com,Alice,"Line one',
      'line two"',
      "",
      "carol@example.com,Carol,Initech",
      "bad-address,Dan,Globex",
    ].join("\n");

    const items = await collect(parseUpload(bytesOf(csv), "list.csv"));

    expect(items).toEqual([
      {
        ok: true,
        recipient: {
          line: 2,
          email: "bob@example.com",
          fields: { name: "Smith, Bob", company: "Acme, Inc." },
        },
      },
      {
        ok: true,
        recipient: {
          line: 3,
          email: "alice@example.com",
          fields: { name: "Alice", company: "Line one\nline two" },
        },
      },
      {
        ok: true,
        recipient: { line: 6, email: "carol@example.com", fields: { name: "Carol", company: "Initech" } },
      },
      { ok: false, rejected: { line: 7, value: "bad-address,Dan,Globex", reason: "missing @" } },
    ]);
  });

  it("numbers CRLF lines right after a quoted field that spans lines", async () => {
    const csv =
      '\uFEFFEmail,Name\r\nbob@example.com,"two\r\nlines"\r\n\r\nalice@example.com,Alice\r\nnope,Nope\r\n';
    const items = await collect(parseUpload(bytesOf(csv, 2), "list.csv"));
    expect(items).toEqual([
      { ok: true, recipient: { line: 2, email: "bob@example.com", fields: { name: "two\nlines" } } },
      { ok: true, recipient: { line: 5, email: "alice@example.com", fields: { name: "Alice" } } },
      { ok: false, rejected: { line: 6, value: "nope,Nope", reason: "missing @" } },
    ]);
  });

  it("keeps extra CSV columns as fields named by the trimmed, lowercased header", async () => {
    const csv = " Email ; First Name ;City;Plan\nan@vi.example;Nguyễn Văn An;Hà Nội;pro\n";
    const items = await collect(parseUpload(bytesOf(csv), "export.csv"));
    expect(accepted(items)).toEqual([
      {
        line: 2,
        email: "an@vi.example",
        fields: { "first name": "Nguyễn Văn An", city: "Hà Nội", plan: "pro" },
      },
    ]);
  });

  it("throws a clear error for a CSV without an email column", async () => {
    const csv = "Name,Company,Address\nBob,Acme,bob@example.com\n";
    await expect(collect(parseUpload(bytesOf(csv), "list.csv"))).rejects.toThrow(
      'CSV header has no "email" column (found: name, company, address)',
    );
  });

  it("throws when the CSV header names a column twice", async () => {
    await expect(collect(parseUpload(bytesOf("email,name,Name\n"), "list.csv"))).rejects.toThrow(
      'CSV header names the column "name" more than once',
    );
  });

  it("rejects a ragged CSV row with the expected and found column counts", async () => {
    const csv = "email,name\nbob@example.com,Bob,Smith\nalice@example.com\ncarol@example.com,Carol\n";
    const items = await collect(parseUpload(bytesOf(csv), "list.csv"));
    expect(items).toEqual([
      {
        ok: false,
        rejected: {
          line: 2,
          value: "bob@example.com,Bob,Smith",
          reason: 'expected 2 columns, found 3: quote values that contain ","',
        },
      },
      { ok: false, rejected: { line: 3, value: "alice@example.com", reason: "expected 2 columns, found 1" } },
      { ok: true, recipient: { line: 4, email: "carol@example.com", fields: { name: "Carol" } } },
    ]);
  });

  it("skips CSV rows whose cells are all empty, as spreadsheets export blank rows", async () => {
    const items = await collect(
      parseUpload(bytesOf("email,name\n,\n   \nbob@example.com,Bob\n"), "list.csv"),
    );
    expect(items).toEqual([
      { ok: true, recipient: { line: 4, email: "bob@example.com", fields: { name: "Bob" } } },
    ]);
  });

  it("throws a wrapped error for a quote that is never closed", async () => {
    await expect(
      collect(parseUpload(bytesOf('email,name\nbob@example.com,"Bob\n'), "list.csv")),
    ).rejects.toThrow(/^CSV could not be read: /);
  });

  it("reads a non-.csv file as CSV when its first line is a header with an email cell", async () => {
    const text = "\nName\tEmail\nBob\tbob@example.com\n";
    const items = await collect(parseUpload(bytesOf(text), "upload.txt"));
    expect(accepted(items)).toEqual([{ line: 3, email: "bob@example.com", fields: { name: "Bob" } }]);
  });

  it("reads a TXT file line by line like pasted text, with a BOM and CRLF", async () => {
    const text =
      "\uFEFFbob@example.com\r\nNguyễn Văn An <an@vi.example>\r\n\r\n# comment\r\nalice@example.com,Alice\r\nbob@\r\n";
    const items = await collect(parseUpload(bytesOf(text, 2), "list.txt"));
    expect(items).toEqual([
      { ok: true, recipient: { line: 1, email: "bob@example.com", fields: {} } },
      { ok: true, recipient: { line: 2, email: "an@vi.example", fields: { name: "Nguyễn Văn An" } } },
      { ok: true, recipient: { line: 5, email: "alice@example.com", fields: { name: "Alice" } } },
      { ok: false, rejected: { line: 6, value: "bob@", reason: "missing domain" } },
    ]);
  });

  it("says the file is empty, for no bytes or only a BOM", async () => {
    for (const name of ["empty.csv", "empty.txt"]) {
      await expect(collect(parseUpload(Readable.from([]), name))).rejects.toThrow(/^the file is empty$/);
      await expect(
        collect(parseUpload(Readable.from([Buffer.from([0xef, 0xbb, 0xbf])]), name)),
      ).rejects.toThrow(/^the file is empty$/);
    }
  });

  it("says a CSV has a header row but no recipients", async () => {
    await expect(collect(parseUpload(bytesOf("email,name\n"), "list.csv"))).rejects.toThrow(
      /^the CSV has a header row but no recipients$/,
    );
    await expect(collect(parseUpload(bytesOf("email,name\n,\n\n"), "list.csv"))).rejects.toThrow(
      /^the CSV has a header row but no recipients$/,
    );
  });

  it("says a file of blank lines and comments has no recipients", async () => {
    await expect(collect(parseUpload(bytesOf("\n# list\n  \n"), "list.txt"))).rejects.toThrow(
      "the file has no recipients: its 3 lines are blank or # comments",
    );
    await expect(collect(parseUpload(bytesOf("\n  \n"), "list.csv"))).rejects.toThrow(
      "the file has no recipients: every line is blank",
    );
  });

  it("streams a 200,000-line TXT built from a generator", async () => {
    const totalLines = 200_000;
    const linesPerChunk = 1_000;
    function* chunks(): Generator<string> {
      for (let start = 1; start <= totalLines; start += linesPerChunk) {
        let chunk = "";
        for (let line = start; line < start + linesPerChunk; line += 1) {
          chunk += line % 1_000 === 0 ? `broken-${line}\n` : `User ${line} <user${line}@example.com>\n`;
        }
        yield chunk;
      }
    }

    let ok = 0;
    const bad: Rejected[] = [];
    for await (const item of parseUpload(Readable.from(chunks()), "big.txt")) {
      if (item.ok) ok += 1;
      else bad.push(item.rejected);
    }

    expect(ok).toBe(199_800);
    expect(bad).toHaveLength(200);
    expect(bad[0]).toEqual({ line: 1_000, value: "broken-1000", reason: "missing @" });
    expect(bad.at(-1)).toEqual({ line: 200_000, value: "broken-200000", reason: "missing @" });
  });

  it("yields the first recipients before the whole upload is read", async () => {
    let chunksRead = 0;
    function* chunks(): Generator<string> {
      yield "email,name\n";
      for (let index = 0; index < 1_000; index += 1) {
        chunksRead += 1;
        yield `user${index}@example.com,User ${index}\n`;
      }
    }
    const input = Readable.from(chunks());

    for await (const item of parseUpload(input, "list.csv")) {
      expect(item.ok).toBe(true);
      break;
    }

    expect(chunksRead).toBeLessThan(1_000);
    expect(input.destroyed).toBe(true);
  });

  it("passes a read error of the upload stream on to the caller", async () => {
    function* failing(): Generator<string> {
      yield "bob@example.com\n";
      throw new Error("connection reset");
    }
    await expect(collect(parseUpload(Readable.from(failing()), "list.txt"))).rejects.toThrow(
      "connection reset",
    );
    await expect(collect(parseUpload(Readable.from(failing()), "list.csv"))).rejects.toThrow(
      "connection reset",
    );
  });
});

/** The text as UTF-16 bytes with a BOM, in the given byte order. */
function utf16(text: string, order: "le" | "be"): Buffer {
  const le = Buffer.from(`\uFEFF${text}`, "utf16le");
  return order === "le" ? le : Buffer.from(le).swap16();
}

/** A stream of the bytes cut every `chunkBytes`. */
function chunked(bytes: Buffer, chunkBytes: number): Readable {
  const chunks: Buffer[] = [];
  for (let start = 0; start < bytes.length; start += chunkBytes)
    chunks.push(bytes.subarray(start, start + chunkBytes));
  return Readable.from(chunks);
}

describe("parseUpload encodings", () => {
  const csv = "email,name\r\nlan@example.vn,Nguyễn Thị Lan\r\nzoe@example.com,Zoë 🦊\r\n";
  const expected = [
    { line: 2, email: "lan@example.vn", fields: { name: "Nguyễn Thị Lan" } },
    { line: 3, email: "zoe@example.com", fields: { name: "Zoë 🦊" } },
  ];

  it.each(["le", "be"] as const)("decodes UTF-16 %s with a BOM, whatever the chunk size", async (order) => {
    for (const chunkBytes of [1, 3, 7, 1024]) {
      const items = await collect(parseUpload(chunked(utf16(csv, order), chunkBytes), "list.csv"));
      expect(items.map((item) => (item.ok ? item.recipient : item.rejected))).toEqual(expected);
    }
  });

  it("reads UTF-8 cut into one-byte chunks, with and without a BOM", async () => {
    for (const text of [csv, `\uFEFF${csv}`]) {
      const items = await collect(parseUpload(chunked(Buffer.from(text, "utf8"), 1), "list.csv"));
      expect(accepted(items)).toEqual(expected);
    }
  });

  it("refuses a Latin-1 file naming the line, the byte and its offset", async () => {
    const latin1 = Buffer.from("email,name\nbob@example.com,Bob\nrene@example.com,Ren\xe9\n", "latin1");
    const offset = latin1.indexOf(0xe9);
    for (const chunkBytes of [1, 5, 4096]) {
      await expect(collect(parseUpload(chunked(latin1, chunkBytes), "list.csv"))).rejects.toThrow(
        `line 3: byte 0xE9 (at byte offset ${offset}) is not UTF-8; save the file as UTF-8`,
      );
    }
  });

  it("counts CR and CRLF line breaks in the line it names", async () => {
    const bytes = Buffer.concat([
      Buffer.from("a@example.com\r\nb@example.com\rc@example.com\n"),
      Buffer.from([0x80]),
    ]);
    await expect(collect(parseUpload(chunked(bytes, 2), "list.txt"))).rejects.toThrow(
      /^line 4: byte 0x80 \(at byte offset 43\) is not UTF-8/,
    );
  });

  it("refuses a NUL byte, naming its line, in UTF-8, in UTF-16 and in text chunks", async () => {
    const text = "email,name\nbob@example.com,Bo\u0000b\n";
    const hint = /^line 2: a NUL byte( \(at byte offset \d+\))? cannot be stored: .* Save the file as UTF-8$/;
    await expect(collect(parseUpload(bytesOf(text), "list.csv"))).rejects.toThrow(hint);
    await expect(collect(parseUpload(chunked(utf16(text, "le"), 4), "list.csv"))).rejects.toThrow(hint);
    await expect(collect(parseUpload(Readable.from([text]), "list.csv"))).rejects.toThrow(hint);
  });

  it("refuses UTF-16 without a BOM as not text, rather than rejecting every line", async () => {
    const bytes = Buffer.from("bob@example.com\n", "utf16le");
    await expect(collect(parseUpload(chunked(bytes, 64), "list.txt"))).rejects.toThrow(
      "line 1: a NUL byte (at byte offset 1) cannot be stored: is this a binary file, or UTF-16 without a byte order mark? Save the file as UTF-8",
    );
  });

  it("refuses UTF-16 with an unpaired surrogate, and a UTF-8 file cut inside a character", async () => {
    const broken = Buffer.concat([utf16("bob@example.com\n", "le"), Buffer.from([0x00, 0xd8, 0x41, 0x00])]);
    await expect(collect(parseUpload(chunked(broken, 8), "list.txt"))).rejects.toThrow(
      "line 2: the UTF-16 text has an unpaired surrogate at byte offset 34; save the file as UTF-8",
    );
    const cut = Buffer.concat([Buffer.from("bob@example.com,Zo"), Buffer.from([0xc3])]);
    await expect(collect(parseUpload(chunked(cut, 4), "list.txt"))).rejects.toThrow(
      /^line 1: the file ends in the middle of a character \(byte 0xC3 at byte offset 18\)/,
    );
  });
});

describe("invalidUtf8Index", () => {
  it.each([
    ["ASCII and every well-formed length", "61c3a9e282acf09fa68a", -1],
    ["a stray continuation byte", "61806162", 1],
    ["an overlong two-byte form", "c080", 0],
    ["an overlong three-byte form", "e08080", 0],
    ["an encoded surrogate", "eda080", 0],
    ["a code point above U+10FFFF", "f4908080", 0],
    ["a byte that never starts a character", "61f5", 1],
    ["a character cut by the end", "61e282", 1],
  ])("finds %s", (_what, hex, index) => {
    expect(invalidUtf8Index(Buffer.from(hex, "hex"))).toBe(index);
  });
});
