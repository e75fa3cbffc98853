/**
 * One look at the Redis broker before a start: does it answer, and does it take the credentials
 * of LOVAGE_BROKER_URL? The broker itself waits out an outage without a word (its connections
 * retry forever, by design), so without this a mistyped port or password would start a Lovage
 * whose recipients stay pending with nothing said.
 */
import { Redis } from "ioredis";
import { redisOptionsFromUrl } from "./queue/connection.js";
import { connectFailure, SettingError } from "./setting-error.js";

export const BROKER_CHECK_TIMEOUT_MS = 5_000;

/** Resolves if Redis at `url` answers PING; throws a SettingError naming LOVAGE_BROKER_URL otherwise. */
export async function checkBroker(url: string, timeoutMs = BROKER_CHECK_TIMEOUT_MS): Promise<void> {
  const redis = new Redis({
    ...redisOptionsFromUrl(url),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // The connection's own error (ECONNREFUSED, WRONGPASS) says more than the command's failure.
  let connectionError: unknown;
  redis.on("error", (error: unknown) => (connectionError ??= error));
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new SettingError(
      "LOVAGE_BROKER_URL",
      connectFailure(connectionError ?? error, { url, defaultPort: 6379 }),
      { cause: connectionError ?? error },
    );
  } finally {
    redis.disconnect();
  }
}
