// Live workers and queues for the views: the server's `workers` and `queue` events, with a
// re-fetch every 5 s as the fallback when the stream is down or an event was missed.
import { useCallback, useEffect, useState } from "react";
import { listQueues, listWorkers, type QueueInfo, subscribeEvents, type WorkerInfo } from "./api";

const POLL_MS = 5000;

export interface LiveList<T> {
  data: T[] | null;
  error: string | null;
  /** Re-reads now (after an action). */
  refresh: () => Promise<void>;
}

function usePolled<T>(read: () => Promise<T[]>): [LiveList<T>, (update: (list: T[] | null) => T[]) => void] {
  const [state, setState] = useState<{ data: T[] | null; error: string | null }>({ data: null, error: null });
  const refresh = useCallback(async () => {
    try {
      const data = await read();
      setState({ data, error: null });
    } catch (e) {
      setState((s) => ({ ...s, error: (e as Error).message }));
    }
  }, [read]);
  useEffect(() => {
    void refresh();
    const timer = setInterval(() => void refresh(), POLL_MS);
    return () => clearInterval(timer);
  }, [refresh]);
  const update = (change: (list: T[] | null) => T[]) =>
    setState((s) => ({ data: change(s.data), error: s.error }));
  return [{ ...state, refresh }, update];
}

export function useWorkers(): LiveList<WorkerInfo> {
  const [live, update] = usePolled(listWorkers);
  useEffect(() => subscribeEvents({ workers: (workers) => update(() => workers) }), []);
  return live;
}

export function useQueues(): LiveList<QueueInfo> & { set: (queue: QueueInfo) => void } {
  const [live, update] = usePolled(listQueues);
  const set = (queue: QueueInfo) =>
    update((list) => {
      const known = (list ?? []).some((q) => q.name === queue.name);
      return known ? (list ?? []).map((q) => (q.name === queue.name ? queue : q)) : [...(list ?? []), queue];
    });
  useEffect(() => subscribeEvents({ queue: set }), []);
  return { ...live, set };
}
