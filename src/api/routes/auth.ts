/**
 * Signing in and out: a username and password for a JWT that every other /api route requires.
 * A token names its user and the user's token generation; signing out or a new password bumps
 * the generation, which revokes every token the user holds.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { findUserForLogin, revokeTokens, updateUser, verifyPassword, type User } from "../../db/users.js";
import type { Caller, TokenClaims } from "../access.js";
import type { AppDeps } from "../app.js";
import { ApiError } from "../errors.js";
import { noBody, noQuery } from "../input.js";

export const DEFAULT_TOKEN_TTL_MS = 12 * 60 * 60 * 1000;

const tags = ["auth"];
// Bounded: every attempt is hashed, and scrypt over megabytes would be a cheap DoS.
const password = { type: "string", minLength: 1, maxLength: 1024 } as const;
export const newPassword = { type: "string", minLength: 8, maxLength: 1024 } as const;

export function signedInCaller(request: FastifyRequest): Caller {
  // The access check sets it on every signed-in route; a route without it is a wiring mistake.
  if (!request.caller) throw new Error(`${request.routeOptions.url} is not a signed-in route`);
  return request.caller;
}

export async function authRoutes(
  app: FastifyInstance,
  deps: Pick<AppDeps, "db" | "tokenTtlMs">,
): Promise<void> {
  const ttlSeconds = Math.max(1, Math.round((deps.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS) / 1000));
  const issue = (user: Pick<User, "id" | "username" | "tokenGeneration">) => {
    const claims: TokenClaims = { sub: user.username, uid: user.id, gen: user.tokenGeneration };
    return { token: app.jwt.sign(claims, { expiresIn: ttlSeconds }), expiresInSeconds: ttlSeconds };
  };

  app.post<{ Body: { username: string; password: string } }>(
    "/api/auth/login",
    {
      config: { access: "public", rateLimit: { max: 20, timeWindow: "1 minute" } },
      schema: {
        summary: "Exchange a username and password for a bearer token",
        tags,
        querystring: noQuery,
        body: {
          type: "object",
          required: ["username", "password"],
          additionalProperties: false,
          properties: { username: { type: "string", minLength: 1, maxLength: 200 }, password },
        },
      },
    },
    async (request) => {
      const found = await findUserForLogin(deps.db, request.body.username);
      // Verify against a dummy hash when the user is unknown, so timing does not reveal usernames.
      const ok = await verifyPassword(request.body.password, found?.passwordHash ?? DUMMY_HASH);
      if (!found || !ok) throw new ApiError("unauthorized", "wrong username or password");
      return { ...issue(found.user), role: found.user.role };
    },
  );

  app.get(
    "/api/auth/me",
    {
      config: { access: "signed-in" },
      schema: { summary: "Who the token belongs to, and its role", tags, querystring: noQuery },
    },
    async (request) => signedInCaller(request),
  );

  app.post(
    "/api/auth/logout",
    {
      config: { access: { signedIn: true, role: "viewer" } },
      schema: {
        summary: "Sign out: revokes every token of this user, on every device",
        tags,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request, reply) => {
      await revokeTokens(deps.db, signedInCaller(request).id);
      return reply.status(204).send();
    },
  );

  app.post<{ Body: { currentPassword: string; newPassword: string } }>(
    "/api/auth/password",
    {
      config: { access: { signedIn: true, role: "viewer" }, rateLimit: { max: 20, timeWindow: "1 minute" } },
      schema: {
        summary: "Change your own password: revokes every other token of yours, answers a new one",
        tags,
        querystring: noQuery,
        body: {
          type: "object",
          required: ["currentPassword", "newPassword"],
          additionalProperties: false,
          properties: { currentPassword: password, newPassword },
        },
      },
    },
    async (request) => {
      const caller = signedInCaller(request);
      const found = await findUserForLogin(deps.db, caller.username);
      if (!found || !(await verifyPassword(request.body.currentPassword, found.passwordHash))) {
        throw new ApiError("bad_request", "body.currentPassword: wrong password");
      }
      const updated = await updateUser(deps.db, caller.id, { password: request.body.newPassword });
      if (typeof updated === "string") throw new ApiError("unauthorized", "this user no longer exists");
      return { ...issue(updated), role: updated.role };
    },
  );
}

const DUMMY_HASH =
  "scrypt$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
