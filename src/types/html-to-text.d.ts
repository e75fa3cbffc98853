/** The part of html-to-text (a dependency of mailparser too) that Lovage uses; it ships no types. */
declare module "html-to-text" {
  export function convert(html: string, options?: Record<string, unknown>): string;
}
