/**
 * The public API of the `lovage` package: define tasks, run workers, send tasks from code, or
 * talk to a running Lovage over HTTP.
 */
export {
  defineTask,
  TaskRegistry,
  type SendOptions,
  type TaskContext,
  type TaskDefinition,
} from "./queue/task.js";
export { PermanentError, TaskFailedError, TaskTimeoutError } from "./queue/errors.js";
export { openBroker, type Broker, type BrokerTarget } from "./queue/connection.js";
export { createProducer, type JobHandle, type JobInfo, type Producer } from "./queue/producer.js";
export { startWorker, type RunningWorker } from "./queue/worker.js";
export { connect, LovageHttpError, type LovageClient } from "./client.js";
