/**
 * What a task handler throws steers what happens next (BullMQ's UnrecoverableError idea):
 * a PermanentError fails the job at once; anything else is retried with backoff while attempts
 * remain.
 */
export class PermanentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentError";
  }
}

/** A handler ran past its time limit; the attempt counts as failed and is retried. */
export class TaskTimeoutError extends Error {
  constructor(taskName: string, timeoutMs: number) {
    super(`task ${taskName} ran longer than its time limit of ${timeoutMs} ms`);
    this.name = "TaskTimeoutError";
  }
}

/** A job failed after its last attempt; `result()` throws it with the job's last error. */
export class TaskFailedError extends Error {
  constructor(
    readonly jobId: string,
    readonly reason: string,
  ) {
    super(`job ${jobId} failed: ${reason}`);
    this.name = "TaskFailedError";
  }
}

/** The job was cancelled while it ran: its handler's signal fires and it is not retried. */
export class TaskCancelledError extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} was cancelled`);
    this.name = "TaskCancelledError";
  }
}
