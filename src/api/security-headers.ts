/**
 * The security headers of every answer (helmet): a Content-Security-Policy that lets the
 * dashboard load only its own built files, no framing, no MIME sniffing, no referrer. The API
 * docs (swagger-ui) get a policy of their own, on their own routes only.
 */
import fastifyHelmet from "@fastify/helmet";
import type { FastifyInstance } from "fastify";

/**
 * The dashboard's policy. Vite's build has no inline script or style (the test of the built
 * index.html checks it), and React's `style={…}` props are set through the CSSOM, which CSP
 * does not govern. `data:` images are the favicon in index.html. No
 * `upgrade-insecure-requests`: Lovage is often reached over plain HTTP on a private network,
 * where it would send the browser to an https:// that does not answer.
 */
const DASHBOARD_CSP = {
  "default-src": ["'self'"],
  "script-src": ["'self'"],
  "style-src": ["'self'"],
  "img-src": ["'self'", "data:"],
  "font-src": ["'self'"],
  "connect-src": ["'self'"],
  "object-src": ["'none'"],
  "base-uri": ["'none'"],
  "form-action": ["'self'"],
  "frame-ancestors": ["'none'"],
};

/**
 * swagger-ui's page: its scripts are files (no inline script), but it sets style attributes
 * from its own code and its stylesheet draws icons as `data:` SVGs.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * A caught message's HTML, shown in the dashboard's sandboxed iframe from its own route: under
 * the dashboard's policy (which a `srcdoc` inherits) an email's inline styles would not apply.
 * Its own styles do here; nothing runs (`sandbox`), nothing is fetched (remote images stay
 * out, as in a mail client), and only the dashboard may frame it.
 */
export const MESSAGE_HTML_HEADERS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      "default-src": ["'none'"],
      "style-src": ["'unsafe-inline'"],
      "img-src": ["data:"],
      "font-src": ["data:"],
      "base-uri": ["'none'"],
      "form-action": ["'none'"],
      "frame-ancestors": ["'self'"],
      sandbox: [],
    },
  },
  frameguard: { action: "sameorigin" },
} as const;

export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: { useDefaults: false, directives: DASHBOARD_CSP },
    frameguard: { action: "deny" },
    referrerPolicy: { policy: "no-referrer" },
  });
}
