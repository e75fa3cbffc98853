/** `lovage token`: log in and print an API token, for curl and scripts (`TOKEN=$(lovage token)`). */
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectFrom, parse, type Command } from "../shared.js";

export const token: Command = {
  name: "token",
  summary: "Log in and print an API token (for curl: TOKEN=$(lovage token))",
  help: `Usage: lovage token

Logs in to a running Lovage and prints a bearer token for its HTTP API (exit 1 if the
credentials are refused):

  TOKEN=$(lovage token)
  curl -s http://127.0.0.1:5000/api/campaigns -H "authorization: Bearer $TOKEN"

${CONNECTION_HELP}`,
  async run(args, env) {
    const { values } = parse(args, CONNECTION_OPTIONS);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const client = await connectFrom(values, env);
    // A token given with --token is checked too: printing it back unchecked would say nothing.
    await client.request("GET", "/api/campaigns?limit=1");
    console.log(client.token);
    return 0;
  },
};
