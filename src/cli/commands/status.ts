/** `lovage status`: campaigns and queues of a running Lovage at a glance. */
import type { CampaignView } from "../../api/present.js";
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectFrom, parse, type Command } from "../shared.js";

export const status: Command = {
  name: "status",
  summary: "Show the latest campaigns and the queues of a running Lovage",
  help: `Usage: lovage status [--json]\n\n${CONNECTION_HELP}`,
  async run(args, env) {
    const { values } = parse(args, { ...CONNECTION_OPTIONS, json: { type: "boolean" } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const client = await connectFrom(values, env);
    const [{ campaigns }, { queues }] = await Promise.all([
      client.request<{ campaigns: CampaignView[] }>("GET", "/api/campaigns?limit=10"),
      client.request<{ queues: { name: string; paused: boolean; counts: Record<string, number> }[] }>(
        "GET",
        "/api/queues",
      ),
    ]);
    if (values.json) {
      console.log(JSON.stringify({ campaigns, queues }, null, 2));
      return 0;
    }
    console.log("Campaigns:");
    for (const c of campaigns) {
      console.log(
        `  #${c.id} ${c.status.padEnd(9)} ${c.counts.sent}/${c.total} sent, ${c.counts.failed} failed, ${c.counts.unknown} unknown  ${c.subject}`,
      );
    }
    if (campaigns.length === 0) console.log("  none yet");
    console.log("Queues:");
    for (const q of queues) {
      console.log(
        `  ${q.name.padEnd(10)} ${Object.entries(q.counts)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}${q.paused ? " (paused)" : ""}`,
      );
    }
    return 0;
  },
};
