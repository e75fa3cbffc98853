/**
 * Recipient domain groups for the figures: the mailbox providers whose limits and replies
 * matter to a sender, and "other". A first grouping by the domain's name alone; the pace work
 * (issue 9) has its own domain groups, and this one function is what it would replace.
 */
export const DOMAIN_GROUPS = Object.freeze(["gmail", "microsoft", "yahoo", "other"] as const);
export type DomainGroup = (typeof DOMAIN_GROUPS)[number];

const BY_DOMAIN: Readonly<Record<string, DomainGroup>> = Object.freeze({
  "gmail.com": "gmail",
  "googlemail.com": "gmail",
  "google.com": "gmail",
  "outlook.com": "microsoft",
  "hotmail.com": "microsoft",
  "live.com": "microsoft",
  "msn.com": "microsoft",
  "microsoft.com": "microsoft",
  "yahoo.com": "yahoo",
  "ymail.com": "yahoo",
  "rocketmail.com": "yahoo",
  "aol.com": "yahoo",
});

/** `hotmail.co.uk`, `yahoo.fr`, `outlook.de`: a provider's national domains. */
const BY_LABEL: Readonly<Record<string, DomainGroup>> = Object.freeze({
  gmail: "gmail",
  googlemail: "gmail",
  outlook: "microsoft",
  hotmail: "microsoft",
  live: "microsoft",
  yahoo: "yahoo",
});

/** The group of a recipient's domain (lower case, without the `@`). */
export function domainGroup(domain: string): DomainGroup {
  const name = domain.toLowerCase().replace(/\.$/, "");
  const exact = BY_DOMAIN[name];
  if (exact) return exact;
  const label = name.split(".")[0] ?? "";
  return BY_LABEL[label] ?? "other";
}
