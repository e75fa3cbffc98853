/**
 * The original's minimal client: send add(10, 20) to a running Lovage and print the result.
 *
 *   LOVAGE_URL=http://127.0.0.1:5000 LOVAGE_TOKEN=… node dist/examples/add/client.js
 */
import { connect } from "../../src/client.js";
import { add } from "./tasks.js";

const lovage = await connect({ url: process.env.LOVAGE_URL, token: process.env.LOVAGE_TOKEN });
console.log("📤 sent add(10, 20)");
const job = await lovage.send(add, { a: 10, b: 20 });
console.log(`📥 result: ${await job.result()}`);
