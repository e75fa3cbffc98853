/**
 * A client for a running Lovage over HTTP: the same `send(task, input)` and `job.result()` as
 * the in-process producer, for scripts and other services. It only speaks the public API.
 */
import { pollJob, type JobHandle, type JobInfo } from "./queue/producer.js";
import type { SendOptions, TaskDefinition } from "./queue/task.js";

export interface ClientOptions {
  /** Default `LOVAGE_URL` or http://127.0.0.1:5000. */
  url?: string | undefined;
  /** A bearer token; or give username and password to log in. */
  token?: string | undefined;
  username?: string;
  password?: string;
}

export class LovageHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
  ) {
    super(message);
    this.name = "LovageHttpError";
  }
}

export interface LovageClient {
  readonly url: string;
  readonly token: string | undefined;
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  send<I, O>(
    task: TaskDefinition<I, O> | string,
    input: I,
    options?: SendOptions,
  ): Promise<JobHandle<Awaited<O>>>;
  getJob(id: string): Promise<Omit<JobInfo, "attemptsMade" | "createdAt" | "finishedAt">>;
}

export async function connect(options: ClientOptions = {}): Promise<LovageClient> {
  const url = (options.url ?? "http://127.0.0.1:5000").replace(/\/$/, "");
  let token = options.token;

  async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new Error(`cannot reach Lovage at ${url}: ${(error as Error).message}`, { cause: error });
    }
    const text = await response.text();
    const json = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string; details?: unknown } } | undefined)
        ?.error;
      throw new LovageHttpError(
        response.status,
        error?.code ?? "http_error",
        error?.message ?? `${method} ${path} answered ${response.status}`,
        error?.details,
      );
    }
    return json as T;
  }

  if (!token && options.username && options.password) {
    token = (
      await request<{ token: string }>("POST", "/api/auth/login", {
        username: options.username,
        password: options.password,
      })
    ).token;
  }

  const getJob = (id: string) =>
    request<Omit<JobInfo, "attemptsMade" | "createdAt" | "finishedAt">>(
      "GET",
      `/api/tasks/${encodeURIComponent(id)}`,
    );

  return {
    url,
    get token() {
      return token;
    },
    request,
    async send<I, O>(task: TaskDefinition<I, O> | string, input: I, options: SendOptions = {}) {
      const name = typeof task === "string" ? task : task.name;
      const { runAt, ...rest } = options;
      const { id } = await request<{ id: string }>("POST", `/api/tasks/${encodeURIComponent(name)}`, {
        input,
        options: { ...rest, ...(runAt ? { runAt: runAt.toISOString() } : {}) },
      });
      const handle: JobHandle<Awaited<O>> = {
        id,
        result: (resultOptions) => pollJob(getJob, id, resultOptions?.timeoutMs) as Promise<Awaited<O>>,
      };
      return handle;
    },
    getJob,
  };
}
