/**
 * Starts bench/sink.ts in its own process and talks to it: its SMTP URL, its counts, and
 * stopping it. One sink per measured run, so that every count starts at zero.
 */
import { fileURLToPath } from "node:url";
import { spawnNode } from "./child.js";
import type { SinkStats } from "./sink.js";

const SINK_SCRIPT = fileURLToPath(new URL("./sink.js", import.meta.url));

export interface Sink {
  url: string;
  pid: number;
  stats(): Promise<SinkStats>;
  close(): Promise<void>;
}

export async function startSink(delayMs: number): Promise<Sink> {
  const child = spawnNode(SINK_SCRIPT, [String(delayMs)], process.env);
  try {
    const ready = await child.waitForLine((line) => line.startsWith('{"url"'), 15_000, "SMTP sink ready");
    const { url } = JSON.parse(ready) as { url: string };
    return {
      url,
      pid: child.pid,
      async stats() {
        const reply = child.waitForLine((line) => line.startsWith("{"), 15_000, "SMTP sink stats", {
          onlyNew: true,
        });
        child.send("stats");
        const parsed = JSON.parse(await reply) as SinkStats | { error: string };
        if ("error" in parsed) throw new Error(`SMTP sink: ${parsed.error}`);
        return parsed;
      },
      async close() {
        await child.stop(5_000);
      },
    };
  } catch (error) {
    await child.stop(1_000);
    throw error;
  }
}
