/**
 * The HTTP server: REST API, authentication, live events, OpenAPI, metrics and the dashboard's
 * files. `buildApp` wires routes to the parts it is given and never listens: main does, and
 * tests call `app.inject()`.
 */
import { existsSync } from "node:fs";
import fastifyJwt from "@fastify/jwt";
import fastifyMultipart from "@fastify/multipart";
import fastifyRateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import type { MessageSettings } from "../mail/message.js";
import type { TestTransport } from "../mail/preview.js";
import type { Broker } from "../queue/connection.js";
import type { Producer } from "../queue/producer.js";
import type { TaskRegistry } from "../queue/task.js";
import { findTokenHolder } from "../db/users.js";
import { declareScopeAccess, enforceAccess } from "./access.js";
import { answerFrameworkError, registerErrorHandler } from "./errors.js";
import { buildValidator, registerInputChecks } from "./input.js";
import { authRoutes } from "./routes/auth.js";
import { bounceRoutes } from "./routes/bounces.js";
import { campaignRoutes } from "./routes/campaigns.js";
import { eventRoutes } from "./routes/events.js";
import { figureRoutes } from "./routes/figures.js";
import { healthRoutes } from "./routes/health.js";
import { messageRoutes } from "./routes/messages.js";
import { metricsRoutes } from "./routes/metrics.js";
import { queueRoutes } from "./routes/queues.js";
import { scheduleRoutes } from "./routes/schedules.js";
import { suppressionRoutes } from "./routes/suppressions.js";
import { smtpRoutes } from "./routes/smtp.js";
import { taskRoutes } from "./routes/tasks.js";
import { userRoutes } from "./routes/users.js";
import { unsubscribeRoutes } from "./routes/unsubscribe.js";
import { webhookRoutes } from "./routes/webhooks.js";
import { DOCS_CSP, registerSecurityHeaders } from "./security-headers.js";

export interface AppDeps {
  db: Kysely<Database>;
  broker: Broker;
  producer: Producer;
  /** Tasks a user may send over HTTP. */
  registry: TaskRegistry;
  /** Woken when a campaign is created or resumed; absent in a process that does not dispatch. */
  dispatcher?: { wake(): void };
  jwtSecret: string;
  /** How long a token is valid; default 12 h. Signing out or a new password revokes it sooner. */
  tokenTtlMs?: number;
  maxBodyBytes: number;
  maxUploadBytes: number;
  /** The sender of campaigns that give none; undefined: they must give one. */
  defaultFrom: string | undefined;
  /** What every message shares (token keys, unsubscribe and bounce settings), for previews. */
  messageSettings?: MessageSettings | undefined;
  /** `LOVAGE_PUBLIC_URL`: without it `{{unsubscribe_url}}` is refused and there is no List-Unsubscribe. */
  publicUrl?: string | undefined;
  /** `LOVAGE_SOFT_BOUNCE_LIMIT`, default 3. */
  softBounceLimit?: number | undefined;
  /** `LOVAGE_SES_WEBHOOK_SECRET`: lets unsigned SES webhook posts in with `?secret=`. */
  sesWebhookSecret?: string | undefined;
  /** How the SES webhook fetches SNS's signing certificates and confirmation URLs; default fetch. */
  snsFetch?: ((url: string) => Promise<string>) | undefined;
  /** The configured SMTP servers' names, which a campaign's `servers` must be among; none when absent. */
  smtpServerNames?: () => readonly string[];
  /** The transport a test send goes through; absent when this process has no SMTP server. */
  testTransport?: TestTransport | undefined;
  /** A worker silent this long is presumed dead and not listed; default 15 s. */
  workerTimeoutMs?: number;
  catcherEnabled: boolean;
  /** When set, GET /metrics answers only with this bearer token (LOVAGE_METRICS_TOKEN). */
  metricsToken?: string;
  ping: { database: () => Promise<void>; broker: () => Promise<void> };
  /** The built dashboard (dist/web); not served when absent. */
  webRoot?: string;
  /** A pino logger; none means quiet (tests). */
  logger?: FastifyBaseLogger;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    bodyLimit: deps.maxBodyBytes,
    // One line per request would bury what matters; errors are still logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // The error handler gives Fastify's own validation errors the common shape; verbose lets it
    // name the known fields and the type it got. Coercion is per part: see buildValidator.
    ajv: {
      customOptions: { removeAdditional: false, allErrors: true, verbose: true, allowUnionTypes: true },
    },
    schemaController: { compilersFactory: { buildValidator } },
    frameworkErrors: answerFrameworkError,
  });
  registerErrorHandler(app);
  // Helmet's hook before the access check's, so that a 401 carries the headers too; the
  // access check before any route, so that every route is declared.
  await registerSecurityHeaders(app);
  enforceAccess(app, { holder: (id, generation) => findTokenHolder(deps.db, id, generation) });
  registerInputChecks(app);

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: "Lovage API",
        version: "1",
        description: "Bulk email and tasks over a distributed queue",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(async (docs) => {
    declareScopeAccess(docs, "public");
    await docs.register(fastifySwaggerUi, {
      routePrefix: "/api/docs",
      staticCSP: DOCS_CSP,
      // The default validator fetches a badge from validator.swagger.io, outside the policy.
      uiConfig: { validatorUrl: null },
    });
  });
  await app.register(fastifyJwt, { secret: deps.jwtSecret });
  // A text field may be as large as a JSON body; over that, the route answers 413 naming it.
  await app.register(fastifyMultipart, {
    limits: { fileSize: deps.maxUploadBytes, files: 1, fields: 20, fieldSize: deps.maxBodyBytes },
  });
  await app.register(fastifyRateLimit, { global: false });

  await app.register(async (api) => {
    await authRoutes(api, deps);
    await userRoutes(api, deps);
    await campaignRoutes(api, deps);
    await taskRoutes(api, deps);
    await scheduleRoutes(api, deps);
    await queueRoutes(api, deps);
    await figureRoutes(api, deps);
    await messageRoutes(api, deps);
    await eventRoutes(api, deps);
    await smtpRoutes(api, deps);
    await healthRoutes(api, deps);
    await metricsRoutes(api, deps);
    await unsubscribeRoutes(api, deps);
    await suppressionRoutes(api, deps);
    await bounceRoutes(api, deps);
    await webhookRoutes(api, deps);
  });

  if (deps.webRoot !== undefined && existsSync(deps.webRoot)) {
    const webRoot = deps.webRoot;
    await app.register(async (web) => {
      declareScopeAccess(web, "public");
      // Only the files of the build: the dashboard routes by #hash, so no page path needs a fallback.
      await web.register(fastifyStatic, { root: webRoot, wildcard: false });
    });
  }
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: { code: "not_found", message: `no route ${request.method} ${request.url}`, details: null },
    }),
  );
  return app;
}
