/**
 * The one message every scenario sends, so that they all move the same bytes: Lovage renders
 * the templates for each recipient, the sequential and raw senders render the same text by
 * hand. Addresses are numbered, so the sink can count them as distinct.
 */
export const FROM = "Lovage Bench <bench@lovage.test>";
export const SUBJECT = "Hello {{name}}, your weekly digest";
export const TEXT = `Hi {{name}},

This is the weekly digest you asked for. It is about as long as a short newsletter: a few
paragraphs of plain text, a link or two, and a footer, so that the SMTP transaction moves a
realistic number of bytes rather than a one-line test body.

- Three new articles were published this week.
- Your account is in good standing.
- Nothing else needs your attention.

See you next week,
The Lovage benchmark
`;

export interface BenchRecipient {
  email: string;
  name: string;
}

/** `n` numbered recipients; a warm-up uses another `prefix`, so its addresses count apart. */
export function recipients(n: number, prefix = "user"): BenchRecipient[] {
  return Array.from({ length: n }, (_, i) => ({
    email: `${prefix}${String(i).padStart(6, "0")}@bench.lovage.test`,
    name: `User ${i}`,
  }));
}

export function render(template: string, recipient: BenchRecipient): string {
  return template.replaceAll("{{name}}", recipient.name);
}
