/** User management, for admins: list, create, change role or password, delete. */
import type { FastifyInstance } from "fastify";
import { deleteUser, insertUser, listUsers, updateUser, type User } from "../../db/users.js";
import { ROLES } from "../../db/schema.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { idParams, noBody, noQuery } from "../input.js";
import { newPassword } from "./auth.js";

const tags = ["users"];
const admin = { signedIn: true, role: "admin" } as const;
const role = { type: "string", enum: [...ROLES] } as const;

function present(user: User) {
  return { id: user.id, username: user.username, role: user.role, createdAt: user.createdAt.toISOString() };
}

const LAST_ADMIN =
  "the last admin can be neither deleted nor given another role: make another user admin first";

export async function userRoutes(app: FastifyInstance, deps: Pick<AppDeps, "db">): Promise<void> {
  app.get(
    "/api/users",
    {
      config: { access: admin },
      schema: { summary: "List users and their roles", tags, querystring: noQuery },
    },
    async () => ({ users: (await listUsers(deps.db)).map(present) }),
  );

  app.post<{ Body: { username: string; password: string; role: User["role"] } }>(
    "/api/users",
    {
      config: { access: admin },
      schema: {
        summary: "Create a user",
        tags,
        querystring: noQuery,
        body: {
          type: "object",
          required: ["username", "password", "role"],
          additionalProperties: false,
          properties: {
            username: { type: "string", minLength: 1, maxLength: 200, pattern: "^[^\\s\\p{Cc}]+$" },
            password: newPassword,
            role,
          },
        },
      },
    },
    async (request, reply) => {
      const user = await insertUser(deps.db, request.body);
      if (!user)
        throw new ApiError("conflict", `body.username: a user named ${request.body.username} exists`);
      return reply.status(201).send(present(user));
    },
  );

  app.patch<{ Params: { id: number }; Body: { role?: User["role"]; password?: string } }>(
    "/api/users/:id",
    {
      config: { access: admin },
      schema: {
        summary: "Change a user's role or password (a new password revokes its tokens)",
        tags,
        params: idParams,
        querystring: noQuery,
        body: {
          type: "object",
          minProperties: 1,
          additionalProperties: false,
          properties: { role, password: newPassword },
        },
      },
    },
    async (request) => {
      const result = await updateUser(deps.db, request.params.id, request.body);
      if (result === "missing") throw notFound(`user ${request.params.id}`);
      if (result === "last-admin") throw new ApiError("conflict", LAST_ADMIN);
      return present(result);
    },
  );

  app.delete<{ Params: { id: number } }>(
    "/api/users/:id",
    {
      config: { access: admin },
      schema: {
        summary: "Delete a user; its tokens stop working at once",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request, reply) => {
      const result = await deleteUser(deps.db, request.params.id);
      if (result === "missing") throw notFound(`user ${request.params.id}`);
      if (result === "last-admin") throw new ApiError("conflict", LAST_ADMIN);
      return reply.status(204).send();
    },
  );
}
