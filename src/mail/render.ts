/**
 * Message templates: `{{name}}` placeholders in a campaign's subject, text and HTML, filled from a
 * recipient's fields.
 *
 * Owns: the placeholder syntax (letters, digits, `_`, `-` and `.`, optional inner spaces, names
 * matched case-insensitively because CSV headers are lowercased), HTML escaping of substituted
 * values, and the list of placeholders no recipient field can fill.
 *
 * Never: fails on an unknown field at render time (it renders as an empty string; callers check
 * `unknownPlaceholders` once, before a campaign is accepted), escapes the template itself (the
 * author's HTML is trusted, the recipients' data is not), evaluates expressions, or does I/O.
 */

export type Template = {
  placeholders: string[];
  render(fields: Record<string, string>, options?: { escapeHtml?: boolean }): string;
};

// Spaces and tabs only: a placeholder split across lines is more likely a typo than intended.
const PLACEHOLDER = /\{\{[ \t]*([\p{L}\p{N}_.-]+)[ \t]*\}\}/gu;
// Fields and placeholders that every recipient has, whatever its input format.
// `unsubscribe_url` is the recipient's one-click link (mail/message.ts), with LOVAGE_PUBLIC_URL.
const ALWAYS_KNOWN = ["email", "name", "unsubscribe_url"];

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * Splits the source once into literal text and placeholder names, so rendering thousands of
 * recipients is a join, not a regex pass each.
 */
export function compileTemplate(source: string): Template {
  // Odd indexes hold lowercased placeholder names, even indexes literal text.
  const parts: string[] = [];
  const placeholders: string[] = [];
  let last = 0;
  for (const match of source.matchAll(PLACEHOLDER)) {
    const name = (match[1] ?? "").toLowerCase();
    parts.push(source.slice(last, match.index), name);
    if (!placeholders.includes(name)) placeholders.push(name);
    last = match.index + match[0].length;
  }
  parts.push(source.slice(last));

  return {
    placeholders,
    render(fields, options = {}) {
      const values = lowercaseKeys(fields);
      let out = "";
      parts.forEach((part, index) => {
        if (index % 2 === 0) {
          out += part;
        } else {
          const value = values.get(part) ?? "";
          out += options.escapeHtml === true ? escapeHtml(value) : value;
        }
      });
      return out;
    },
  };
}

/** Placeholders, in order of first use, that neither `knownFields` nor every recipient provides. */
export function unknownPlaceholders(templates: Template[], knownFields: Iterable<string>): string[] {
  const known = new Set(ALWAYS_KNOWN);
  for (const field of knownFields) known.add(field.toLowerCase());
  const unknown: string[] = [];
  for (const template of templates) {
    for (const name of template.placeholders) {
      if (!known.has(name) && !unknown.includes(name)) unknown.push(name);
    }
  }
  return unknown;
}

// A Map, not the object itself: `{{constructor}}` must not find Object.prototype.constructor.
function lowercaseKeys(fields: Record<string, string>): Map<string, string> {
  const values = new Map<string, string>();
  for (const [key, value] of Object.entries(fields)) {
    const name = key.toLowerCase();
    // An exact lowercase key wins over "Name"-style variants of it.
    if (!values.has(name) || key === name) values.set(name, value);
  }
  return values;
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}
