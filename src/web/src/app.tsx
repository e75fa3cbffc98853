// The shell: the login gate, the header with its tabs, and which view the hash route shows.
// It also carries the last campaign-creation result to the campaign's page.
import { useEffect, useState } from "react";
import { type CreateCampaignResult, getMe, getToken, logout, onUnauthorized, type User } from "./api";
import { CampaignDetailView } from "./campaign-detail-view";
import { CampaignsView } from "./campaigns-view";
import { LoginView } from "./login-view";
import { MessagesView } from "./messages-view";
import { NewCampaignView } from "./new-campaign-view";
import { OverviewView } from "./overview-view";
import { QueuesView } from "./queues-view";
import { href, navigate, type Route, useRoute } from "./route";
import { SchedulesView } from "./schedules-view";
import { SuppressionsView } from "./suppressions-view";
import { TasksView } from "./tasks-view";
import { UsersView } from "./users-view";
import { WorkersView } from "./workers-view";

const TABS: {
  label: string;
  route: Route;
  active: (r: Route) => boolean;
  testId: string;
  adminOnly?: boolean;
}[] = [
  {
    label: "Overview",
    route: { view: "overview" },
    active: (r) => r.view === "overview",
    testId: "nav-overview",
  },
  {
    label: "Campaigns",
    route: { view: "campaigns" },
    active: (r) => r.view === "campaigns" || r.view === "campaign",
    testId: "nav-campaigns",
  },
  {
    label: "New campaign",
    route: { view: "new-campaign" },
    active: (r) => r.view === "new-campaign",
    testId: "nav-new-campaign",
  },
  {
    label: "Caught mail",
    route: { view: "messages", id: null },
    active: (r) => r.view === "messages",
    testId: "nav-messages",
  },
  {
    label: "Workers",
    route: { view: "workers" },
    active: (r) => r.view === "workers",
    testId: "nav-workers",
  },
  { label: "Queues", route: { view: "queues" }, active: (r) => r.view === "queues", testId: "nav-queues" },
  { label: "Tasks", route: { view: "tasks" }, active: (r) => r.view === "tasks", testId: "nav-tasks" },
  {
    label: "Schedules",
    route: { view: "schedules" },
    active: (r) => r.view === "schedules",
    testId: "nav-schedules",
  },
  {
    label: "Suppressions",
    route: { view: "suppressions" },
    active: (r) => r.view === "suppressions",
    testId: "nav-suppressions",
  },
  {
    label: "Users",
    route: { view: "users" },
    active: (r) => r.view === "users",
    testId: "nav-users",
    adminOnly: true,
  },
];

export function App() {
  const [signedIn, setSignedIn] = useState(() => getToken() !== null);
  const [lastImport, setLastImport] = useState<CreateCampaignResult | null>(null);
  const [me, setMe] = useState<Omit<User, "createdAt"> | null>(null);
  const route = useRoute();

  useEffect(() => onUnauthorized(() => setSignedIn(false)), []);
  useEffect(() => {
    setMe(null);
    if (signedIn) void getMe().then(setMe, () => undefined);
  }, [signedIn]);

  useEffect(() => {
    const titles: Record<Route["view"], string> = {
      overview: "Overview",
      workers: "Workers",
      queues: "Queues",
      schedules: "Schedules",
      campaigns: "Campaigns",
      "new-campaign": "New campaign",
      campaign: "Campaign",
      messages: "Caught mail",
      tasks: "Tasks",
      users: "Users",
      suppressions: "Suppressions",
    };
    document.title = `${titles[route.view]} · Lovage`;
  }, [route.view]);

  if (!signedIn) return <LoginView onLoggedIn={() => setSignedIn(true)} />;

  const onCreated = (result: CreateCampaignResult) => {
    setLastImport(result);
    navigate({ view: "campaign", id: result.campaign.id });
  };

  return (
    <div className="app">
      <header className="header">
        <div className="header-inner">
          <a className="brand" href={href({ view: "campaigns" })}>
            <span className="logo-mark" aria-hidden="true" />
            Lovage
          </a>
          <nav className="tabs" aria-label="Main">
            {TABS.filter((t) => !t.adminOnly || me?.role === "admin").map((t) => (
              <a
                key={t.testId}
                href={href(t.route)}
                className={t.active(route) ? "tab tab-active" : "tab"}
                aria-current={t.active(route) ? "page" : undefined}
                data-testid={t.testId}
              >
                {t.label}
              </a>
            ))}
          </nav>
          {me && (
            <span className="muted whoami" data-testid="whoami">
              {me.username} · {me.role}
            </span>
          )}
          <button className="btn btn-ghost btn-small" onClick={() => void logout()} data-testid="logout">
            Sign out
          </button>
        </div>
      </header>
      <main className="main">
        {route.view === "campaigns" && <CampaignsView />}
        {route.view === "new-campaign" && <NewCampaignView onCreated={onCreated} />}
        {route.view === "campaign" && (
          <CampaignDetailView
            key={route.id}
            id={route.id}
            importResult={lastImport?.campaign.id === route.id ? lastImport : null}
            onDismissImport={() => setLastImport(null)}
          />
        )}
        {route.view === "messages" && <MessagesView id={route.id} />}
        {route.view === "overview" && <OverviewView />}
        {route.view === "workers" && <WorkersView id={route.id ?? null} />}
        {route.view === "queues" && <QueuesView />}
        {route.view === "tasks" && <TasksView id={route.id} queue={route.queue} state={route.state} />}
        {route.view === "schedules" && <SchedulesView />}
        {route.view === "suppressions" && <SuppressionsView />}
        {route.view === "users" && <UsersView me={me?.username ?? ""} />}
      </main>
    </div>
  );
}
