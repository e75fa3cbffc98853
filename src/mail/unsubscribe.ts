/**
 * One-click unsubscribe (RFC 8058): the token in a message's List-Unsubscribe link names its
 * recipient; a POST to the link puts the recipient's address on the suppression list at once.
 * A GET only shows what a POST would do: link scanners and previews follow links, and must not
 * unsubscribe anyone.
 *
 * Never: unsubscribes on a token it did not make (mail/tokens.ts refuses forged and altered
 * ones), or says more about the address than its owner already knows.
 */
import type { Tokens } from "./tokens.js";

export interface UnsubscribeStore {
  /** The address and campaign of a recipient, or undefined when there is no such row. */
  recipientAddress(recipientId: number): Promise<{ email: string; campaignId: number } | undefined>;
  /** Puts the recipient's address on the list as `unsubscribed` (a stronger reason stays). */
  unsubscribe(recipientId: number): Promise<{ email: string; campaignId: number } | undefined>;
}

export type UnsubscribeAnswer = { ok: true; email: string } | { ok: false };

export async function lookUpUnsubscribe(
  store: UnsubscribeStore,
  tokens: Tokens,
  token: string,
): Promise<UnsubscribeAnswer> {
  const id = tokens.read("unsubscribe", token);
  const found = id === undefined ? undefined : await store.recipientAddress(id);
  return found ? { ok: true, email: found.email } : { ok: false };
}

export async function unsubscribe(
  store: UnsubscribeStore,
  tokens: Tokens,
  token: string,
): Promise<UnsubscribeAnswer> {
  const id = tokens.read("unsubscribe", token);
  const done = id === undefined ? undefined : await store.unsubscribe(id);
  return done ? { ok: true, email: done.email } : { ok: false };
}

/** `ann@example.com` as `a••@example.com`: enough for its owner to recognise, little for anyone else. */
export function maskAddress(email: string): string {
  const at = email.lastIndexOf("@");
  const local = email.slice(0, at);
  return `${local.slice(0, 1)}${"•".repeat(Math.min(Math.max(local.length - 1, 2), 6))}${email.slice(at)}`;
}
