// Live campaign state for the views: the server's `event: campaign` stream, with a re-fetch
// every 3 s as the fallback when the stream is down or an event was missed.
import { useEffect, useState } from "react";
import { type Campaign, getCampaign, listCampaigns, subscribeCampaigns } from "./api";

const POLL_MS = 3000;

export interface Live<T> {
  data: T | null;
  error: string | null;
}

/** Runs `tick` now and every POLL_MS until the component unmounts. */
function usePoll(tick: () => Promise<void>, deps: unknown[]): void {
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      await tick();
      if (!stopped) timer = setTimeout(() => void run(), POLL_MS);
    };
    void run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, deps);
}

export function useCampaigns(): Live<Campaign[]> {
  const [state, setState] = useState<Live<Campaign[]>>({ data: null, error: null });

  usePoll(async () => {
    try {
      const campaigns = await listCampaigns();
      setState({ data: campaigns, error: null });
    } catch (e) {
      setState((s) => ({ ...s, error: (e as Error).message }));
    }
  }, []);

  useEffect(
    () =>
      subscribeCampaigns((c) =>
        setState((s) => {
          const list = s.data ?? [];
          const known = list.some((x) => x.id === c.id);
          // A campaign the list has not seen yet is the newest: it goes first.
          const data = known ? list.map((x) => (x.id === c.id ? c : x)) : [c, ...list];
          return { data, error: s.error };
        }),
      ),
    [],
  );

  return state;
}

export function useCampaign(id: number): Live<Campaign> & { set: (c: Campaign) => void } {
  const [state, setState] = useState<Live<Campaign>>({ data: null, error: null });

  usePoll(async () => {
    try {
      const campaign = await getCampaign(id);
      setState({ data: campaign, error: null });
    } catch (e) {
      setState((s) => ({ ...s, error: (e as Error).message }));
    }
  }, [id]);

  useEffect(
    () =>
      subscribeCampaigns((c) => {
        if (c.id === id) setState({ data: c, error: null });
      }),
    [id],
  );

  return { ...state, set: (c: Campaign) => setState({ data: c, error: null }) };
}
