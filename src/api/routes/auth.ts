/** Login: a username and password for a JWT that every other /api route requires. */
import type { FastifyInstance } from "fastify";
import { findUser, verifyPassword } from "../../db/users.js";
import { ApiError } from "../errors.js";
import type { AppDeps } from "../app.js";
import { noQuery } from "../input.js";

export const TOKEN_TTL = "12h";

export async function authRoutes(app: FastifyInstance, deps: Pick<AppDeps, "db">): Promise<void> {
  app.post<{ Body: { username: string; password: string } }>(
    "/api/auth/login",
    {
      config: { access: "public", rateLimit: { max: 20, timeWindow: "1 minute" } },
      schema: {
        summary: "Exchange a username and password for a bearer token",
        tags: ["auth"],
        querystring: noQuery,
        body: {
          type: "object",
          required: ["username", "password"],
          additionalProperties: false,
          properties: {
            username: { type: "string", minLength: 1, maxLength: 200 },
            // Bounded: every attempt is hashed, and scrypt over megabytes would be a cheap DoS.
            password: { type: "string", minLength: 1, maxLength: 1024 },
          },
        },
      },
    },
    async (request) => {
      const user = await findUser(deps.db, request.body.username);
      // Verify against a dummy hash when the user is unknown, so timing does not reveal usernames.
      const ok = await verifyPassword(request.body.password, user?.password_hash ?? DUMMY_HASH);
      if (!user || !ok) throw new ApiError("unauthorized", "wrong username or password");
      return { token: app.jwt.sign({ sub: user.username }, { expiresIn: TOKEN_TTL }) };
    },
  );
}

const DUMMY_HASH =
  "scrypt$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
