/**
 * Who may call each route. Every route declares it in its options, `config: { access }`, and
 * the check reads that declaration from the route the router matched
 * (`request.routeOptions.config`). It never looks at the URL: the router decodes and matches
 * the path by its own rules (`/%61pi/campaigns` is `/api/campaigns`), so a test on the URL
 * string is a second, different router that a spelling can slip past (issue 6). A route that
 * declares nothing, or something this module does not know, stops the server at start-up.
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from "fastify";
import { ROLES, type Role } from "../db/schema.js";
import { ApiError } from "./errors.js";

/**
 * - `"public"`: anyone, without a token.
 * - `"signed-in"`: a valid bearer token in the `Authorization` header, of a user whose role may
 *   use the method: any role may read (GET, HEAD), a `viewer` may change nothing.
 * - `{ signedIn: true, … }`: signed in, with conditions.
 */
export type Access = "public" | "signed-in" | SignedIn;

export interface SignedIn {
  signedIn: true;
  /** The token may also come as `?token=`: an EventSource or an iframe cannot send headers. */
  tokenInQuery?: boolean;
  /** The least role that may call the route, instead of the one its method implies. */
  role?: Role;
}

/** Who made a request, read from the store on each request so that revocation is immediate. */
export interface Caller {
  id: number;
  username: string;
  role: Role;
}

/** What the access check needs from the users' store. */
export interface TokenHolders {
  /** The user a token names, or undefined if it was deleted or its tokens were revoked since. */
  holder(userId: number, tokenGeneration: number): Promise<Caller | undefined>;
}

/** The claims of a Lovage token. */
export interface TokenClaims {
  sub: string;
  uid: number;
  gen: number;
}

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** Set by the access check on every signed-in route. */
    caller?: Caller;
  }
}

const SIGNED_IN_KEYS = new Set<string>(["signedIn", "tokenInQuery", "role"]);
const READ_METHODS = new Set(["GET", "HEAD"]);

/** Higher is more: admin 2, sender 1, viewer 0. */
const rank = (role: Role) => ROLES.length - 1 - ROLES.indexOf(role);

function isAccess(value: unknown): value is Access {
  if (value === "public" || value === "signed-in") return true;
  if (typeof value !== "object" || value === null) return false;
  const object = value as Record<string, unknown>;
  return (
    object.signedIn === true &&
    Object.keys(object).every((key) => SIGNED_IN_KEYS.has(key)) &&
    (object.tokenInQuery === undefined || typeof object.tokenInQuery === "boolean") &&
    (object.role === undefined || (ROLES as readonly unknown[]).includes(object.role))
  );
}

function isClaims(value: unknown): value is TokenClaims {
  const claims = value as Partial<TokenClaims> | null;
  return (
    typeof claims === "object" &&
    claims !== null &&
    typeof claims.sub === "string" &&
    Number.isInteger(claims.uid) &&
    Number.isInteger(claims.gen)
  );
}

/** Plugins (the API docs, the dashboard's files) register routes that take no options of ours. */
const kScopeAccess = Symbol("lovage.scopeAccess");

/**
 * Declares the access of every route that plugins registered inside `scope` add. Register
 * such a plugin in a scope of its own, so that the declaration covers it and nothing else.
 */
export function declareScopeAccess(scope: FastifyInstance, access: "public" | "signed-in"): void {
  scope.decorate(kScopeAccess, access);
}

/**
 * Makes every route declare its access, and checks it on each request. Call it on the root
 * instance before any route is registered: routes added before it are not checked.
 */
export function enforceAccess(app: FastifyInstance, users: TokenHolders): void {
  app.addHook("onRoute", function (this: FastifyInstance, route: RouteOptions) {
    const declared: unknown =
      route.config && "access" in route.config
        ? route.config.access
        : (this as unknown as { [kScopeAccess]?: Access })[kScopeAccess];
    const where = `${[route.method].flat().join(",")} ${route.url}`;
    if (declared === undefined)
      throw new Error(`${where} declares no access: give it config: { access: "public" | "signed-in" }`);
    if (!isAccess(declared))
      throw new Error(
        `${where}: access must be "public", "signed-in" or { signedIn: true, tokenInQuery?: boolean, role?: ${ROLES.join(" | ")} }, got ${JSON.stringify(declared)}`,
      );
    route.config = { ...route.config, access: declared };
    // The OpenAPI document requires the bearer token everywhere unless a route says otherwise.
    if (declared === "public" && route.schema && !route.schema.hide)
      route.schema = { ...route.schema, security: [] };
  });

  app.addHook("onRequest", async (request) => {
    // The not-found handler is no route: it answers 404 and nothing else, to anyone.
    const access = request.is404 ? "public" : request.routeOptions.config.access;
    if (access === "public") return;
    // Undeclared cannot pass onRoute; were it to happen, it would need a token, as signed-in.
    const queryToken =
      typeof access === "object" && access.tokenInQuery ? tokenFromQuery(request) : undefined;
    let claims: unknown;
    try {
      claims = queryToken !== undefined ? app.jwt.verify(queryToken) : await request.jwtVerify();
    } catch {
      throw new ApiError("unauthorized", "a valid bearer token is required: POST /api/auth/login first");
    }
    // A token signed before roles (no uid) is refused like a revoked one: sign in again.
    const caller = isClaims(claims) ? await users.holder(claims.uid, claims.gen) : undefined;
    if (!caller) {
      throw new ApiError(
        "unauthorized",
        "this token was revoked (signed out, password changed or user deleted): POST /api/auth/login again",
      );
    }
    const needed: Role =
      (typeof access === "object" ? access.role : undefined) ??
      (READ_METHODS.has(request.method) ? "viewer" : "sender");
    if (rank(caller.role) < rank(needed)) {
      const allowed = ROLES.filter((role) => rank(role) >= rank(needed))
        .reverse()
        .join(" or ");
      throw new ApiError(
        "forbidden",
        `${request.method} ${request.routeOptions.url ?? request.url} needs the role ${allowed}; ${caller.username} is ${caller.role}`,
      );
    }
    request.caller = caller;
  });
}

function tokenFromQuery(request: FastifyRequest): string | undefined {
  const token = (request.query as Record<string, unknown> | undefined)?.token;
  return typeof token === "string" && token !== "" ? token : undefined;
}
