// Hash routes, so the server needs no fallback for deep links: #/overview, #/campaigns,
// #/campaigns/new, #/campaigns/12, #/messages, #/messages/abc, #/workers, #/workers/ID,
// #/queues, #/tasks, #/tasks?queue=q&state=failed, #/tasks/ID, #/schedules, #/suppressions, #/users.
import { useEffect, useState } from "react";

export type Route =
  | { view: "overview" }
  | { view: "campaigns" }
  | { view: "new-campaign" }
  | { view: "campaign"; id: number }
  | { view: "messages"; id: string | null }
  | { view: "workers"; id?: string | null }
  | { view: "queues" }
  | { view: "tasks"; id?: string | null; queue?: string; state?: string }
  | { view: "schedules" }
  | { view: "users" }
  | { view: "suppressions" };

export function parseRoute(hash: string): Route {
  const [path = "", query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (first === "campaigns" && second === "new") return { view: "new-campaign" };
  if (first === "campaigns" && second && /^\d+$/.test(second))
    return { view: "campaign", id: Number(second) };
  if (first === "messages") return { view: "messages", id: second ?? null };
  if (first === "users") return { view: "users" };
  if (first === "suppressions") return { view: "suppressions" };
  if (first === "overview") return { view: "overview" };
  if (first === "workers") return { view: "workers", id: second ?? null };
  if (first === "queues") return { view: "queues" };
  if (first === "schedules") return { view: "schedules" };
  if (first === "tasks") {
    const params = new URLSearchParams(query);
    return {
      view: "tasks",
      id: second ?? null,
      queue: params.get("queue") ?? undefined,
      state: params.get("state") ?? undefined,
    };
  }
  return { view: "campaigns" };
}

export function href(route: Route): string {
  switch (route.view) {
    case "overview":
      return "#/overview";
    case "campaigns":
      return "#/campaigns";
    case "new-campaign":
      return "#/campaigns/new";
    case "campaign":
      return `#/campaigns/${route.id}`;
    case "messages":
      return route.id === null ? "#/messages" : `#/messages/${encodeURIComponent(route.id)}`;
    case "users":
      return "#/users";
    case "suppressions":
      return "#/suppressions";
    case "workers":
      return route.id ? `#/workers/${encodeURIComponent(route.id)}` : "#/workers";
    case "queues":
      return "#/queues";
    case "schedules":
      return "#/schedules";
    case "tasks": {
      if (route.id) return `#/tasks/${encodeURIComponent(route.id)}`;
      const params = new URLSearchParams();
      if (route.queue) params.set("queue", route.queue);
      if (route.state) params.set("state", route.state);
      const qs = params.toString();
      return qs ? `#/tasks?${qs}` : "#/tasks";
    }
  }
}

export function navigate(route: Route): void {
  window.location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
