/**
 * Opaque ids that go on the wire: in X-Lovage-Recipient and X-Lovage-Campaign, in Message-IDs,
 * in VERP bounce addresses and in unsubscribe links. Each is one AES block holding a kind, the
 * row id and a 64-bit HMAC of both, under keys derived from the deployment's mail secret: it
 * reads as 26 random lowercase letters and digits (so it survives a receiver that folds the case
 * of a bounce address), it reveals no count, and it cannot be guessed, forged or turned into
 * another recipient's (or another kind's: an id copied from a Message-ID unsubscribes no one).
 *
 * Never: stores anything, or accepts a token whose HMAC does not match.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, timingSafeEqual } from "node:crypto";

export const TOKEN_KINDS = Object.freeze({
  recipient: 1,
  unsubscribe: 2,
  messageId: 3,
  campaign: 4,
} as const);
export type TokenKind = keyof typeof TOKEN_KINDS;

/** The largest id a token holds: 7 bytes, far beyond any int column. */
const MAX_ID = 2 ** 53 - 1;
const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

export interface Tokens {
  make(kind: TokenKind, id: number): string;
  /** The id a token holds, or undefined when it is not one of this kind made with this secret. */
  read(kind: TokenKind, token: string): number | undefined;
}

export function createTokens(secret: string): Tokens {
  if (secret.length < 16) throw new Error("the mail secret must have at least 16 characters");
  const derive = (purpose: string) =>
    Buffer.from(hkdfSync("sha256", secret, "lovage-mail-tokens", purpose, 32));
  const cipherKey = derive("aes").subarray(0, 16);
  const macKey = derive("hmac");
  const mac = (kind: number, id: Buffer) =>
    createHmac("sha256", macKey).update(Buffer.of(kind)).update(id).digest().subarray(0, 8);

  return {
    make(kind, id) {
      if (!Number.isSafeInteger(id) || id < 0 || id > MAX_ID) throw new Error(`not a row id: ${id}`);
      const idBytes = Buffer.alloc(7);
      idBytes.writeUIntBE(Math.floor(id / 2 ** 24), 0, 4);
      idBytes.writeUIntBE(id % 2 ** 24, 4, 3);
      const block = Buffer.concat([Buffer.of(TOKEN_KINDS[kind]), idBytes, mac(TOKEN_KINDS[kind], idBytes)]);
      const cipher = createCipheriv("aes-128-ecb", cipherKey, null).setAutoPadding(false);
      return base32(Buffer.concat([cipher.update(block), cipher.final()]));
    },
    read(kind, token) {
      const bytes = unbase32(token.toLowerCase());
      if (bytes === undefined || bytes.length !== 16) return undefined;
      const decipher = createDecipheriv("aes-128-ecb", cipherKey, null).setAutoPadding(false);
      const block = Buffer.concat([decipher.update(bytes), decipher.final()]);
      if (block[0] !== TOKEN_KINDS[kind]) return undefined;
      const idBytes = block.subarray(1, 8);
      if (!timingSafeEqual(block.subarray(8), mac(TOKEN_KINDS[kind], idBytes))) return undefined;
      return idBytes.readUIntBE(0, 4) * 2 ** 24 + idBytes.readUIntBE(4, 3);
    },
  };
}

function base32(bytes: Buffer): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Buffer | undefined {
  // 26 characters carry 130 bits: the last 2 must be 0, so that no two spellings are one token.
  if (!/^[a-z2-7]{26}$/.test(text) || (ALPHABET.indexOf(text[25]!) & 3) !== 0) return undefined;
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    value = ((value << 5) | ALPHABET.indexOf(char)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
