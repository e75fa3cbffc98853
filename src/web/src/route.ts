// Hash routes, so the server needs no fallback for deep links: #/campaigns, #/campaigns/new,
// #/campaigns/12, #/messages, #/messages/abc, #/tasks, #/users.
import { useEffect, useState } from "react";

export type Route =
  | { view: "campaigns" }
  | { view: "new-campaign" }
  | { view: "campaign"; id: number }
  | { view: "messages"; id: string | null }
  | { view: "tasks" }
  | { view: "users" };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (first === "campaigns" && second === "new") return { view: "new-campaign" };
  if (first === "campaigns" && second && /^\d+$/.test(second))
    return { view: "campaign", id: Number(second) };
  if (first === "messages") return { view: "messages", id: second ?? null };
  if (first === "tasks") return { view: "tasks" };
  if (first === "users") return { view: "users" };
  return { view: "campaigns" };
}

export function href(route: Route): string {
  switch (route.view) {
    case "campaigns":
      return "#/campaigns";
    case "new-campaign":
      return "#/campaigns/new";
    case "campaign":
      return `#/campaigns/${route.id}`;
    case "messages":
      return route.id === null ? "#/messages" : `#/messages/${encodeURIComponent(route.id)}`;
    case "tasks":
      return "#/tasks";
    case "users":
      return "#/users";
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
