/**
 * The error budget's thresholds as a user writes them: `LOVAGE_ERROR_BUDGET` (`10%/200/50` or
 * `off`) and a campaign's `errorBudget` option (`{share, window, minimum}`, the same text, or
 * `false`). One check for both, so that a campaign is refused for exactly what the setting is.
 * It only reads values; the send-batch task applies them.
 */
import type { ErrorBudget } from "./send-batch.js";

/** What a valid budget is, as every error message says it. */
const TEXT_FORM = "share%/window/minimum (like 10%/200/50, minimum at most window) or off";
const OBJECT_FORM =
  '{share, window, minimum} (like {"share": 0.1, "window": 200, "minimum": 50}: share above 0 and below 1, window a whole number from 1 to 100000, minimum a whole number from 0 to window) or false';

/** The thresholds, or a reason naming what a valid one looks like. */
function checked(share: number, window: number, minimum: number): ErrorBudget | undefined {
  const whole = (n: number) => Number.isInteger(n) && n >= 0;
  if (!(share > 0 && share < 1) || !whole(window) || window < 1 || window > 100_000) return undefined;
  if (!whole(minimum) || minimum > window) return undefined;
  return { share, window, minimum };
}

/** `10%/200/50` or `off` (false); throws with the expected form when it is neither. */
export function parseErrorBudgetText(raw: string): ErrorBudget | false {
  if (raw === "off") return false;
  const match = /^(\d+(?:\.\d+)?)%\/(\d+)\/(\d+)$/.exec(raw);
  const budget = match && checked(Number(match[1]) / 100, Number(match[2]), Number(match[3]));
  if (!budget) throw new Error(`expected ${TEXT_FORM}, got "${raw}"`);
  return budget;
}

/**
 * A campaign's option: the object, `false`, or (as a multipart field is text) the object as
 * JSON, `false`, or the setting's text. Throws with the expected form when it is none of them.
 */
export function parseErrorBudgetOption(value: unknown): ErrorBudget | false {
  if (value === false || value === "false") return false;
  if (typeof value === "string") {
    const text = value.trim();
    if (!text.startsWith("{")) {
      try {
        return parseErrorBudgetText(text);
      } catch {
        throw new Error(`expected ${OBJECT_FORM}, or the text ${TEXT_FORM}, got "${value}"`);
      }
    }
    try {
      value = JSON.parse(text);
    } catch {
      throw new Error(`expected ${OBJECT_FORM}, got text that is not JSON`);
    }
  }
  const shown = JSON.stringify(value)?.slice(0, 200) ?? String(value);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`expected ${OBJECT_FORM}, got ${shown}`);
  const { share, window, minimum, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw new Error(`unknown field "${extra[0]}": expected ${OBJECT_FORM}`);
  const budget =
    typeof share === "number" && typeof window === "number" && typeof minimum === "number"
      ? checked(share, window, minimum)
      : undefined;
  if (!budget) throw new Error(`expected ${OBJECT_FORM}, got ${shown}`);
  return budget;
}
