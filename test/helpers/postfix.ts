/**
 * Debian's Postfix as a relay nobody here wrote: an instance of the test's own (its own
 * main.cf/master.cf, queue and mailbox in a temporary directory, `postfix -c DIR`), listening on
 * a free 127.0.0.1 port, delivering every recipient of `example.test` to one Maildir, with the
 * `anvil` limits the test gives. Root only (Postfix's master runs as root).
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./services.js";

export const POSTFIX = "/usr/sbin/postfix";

export interface PostfixServer {
  url: string;
  port: number;
  /** Delivered messages by envelope recipient (the Delivered-To header Postfix adds), from the Maildir. */
  deliveries(): Map<string, number>;
  /** Lines of its log that match. */
  logLines(pattern: RegExp): string[];
  stop(): Promise<void>;
}

/** Why Postfix cannot run here, or undefined when it can. */
export function postfixUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "Postfix's master must run as root";
  if (!existsSync(POSTFIX))
    return `${POSTFIX} is missing (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)`;
  return undefined;
}

const MASTER_CF = (port: number) => `
127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`;

export async function startPostfix(limits: Record<string, string>): Promise<PostfixServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "lovage-postfix-"));
  // Postfix's daemons run as postfix and nobody: they must reach their directories.
  chmodSync(dir, 0o755);
  const queue = join(dir, "queue");
  const data = join(dir, "data");
  const mail = join(dir, "mail");
  for (const d of [queue, data, mail]) mkdirSync(d, { recursive: true });
  chownSync(data, uidOf("postfix"), 0);
  // The virtual delivery agent writes as nobody.
  chownSync(mail, 65534, 65534);
  const log = join(dir, "maillog");
  const settings: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: queue,
    data_directory: data,
    maillog_file: log,
    // Postfix refuses a log file outside these prefixes.
    maillog_file_prefixes: dir,
    mail_owner: "postfix",
    setgid_group: "postdrop",
    myhostname: "relay.lovage.test",
    mydomain: "lovage.test",
    mydestination: "",
    inet_interfaces: "127.0.0.1",
    inet_protocols: "ipv4",
    mynetworks: "127.0.0.0/8",
    smtpd_relay_restrictions: "permit_mynetworks, reject",
    smtpd_tls_security_level: "none",
    virtual_mailbox_domains: "example.test",
    virtual_mailbox_base: mail,
    virtual_mailbox_maps: "static:box/",
    virtual_uid_maps: "static:65534",
    virtual_gid_maps: "static:65534",
    biff: "no",
    ...limits,
  };
  writeFileSync(
    join(dir, "main.cf"),
    Object.entries(settings)
      .map(([key, value]) => `${key} = ${value}`)
      .join("\n") + "\n",
  );
  writeFileSync(join(dir, "master.cf"), MASTER_CF(port));
  execFileSync(POSTFIX, ["-c", dir, "start"], { stdio: "pipe" });
  // Ready when it answers on its port.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      execFileSync("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: "ignore" });
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`postfix did not listen on ${port}:\n${readLog(log)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    deliveries() {
      const counts = new Map<string, number>();
      const box = join(mail, "box", "new");
      if (!existsSync(box)) return counts;
      for (const file of readdirSync(box)) {
        const head = readFileSync(join(box, file), "utf8").split(/\r?\n\r?\n/)[0]!;
        const to = /^Delivered-To: (.*)$/im.exec(head)?.[1]?.trim().toLowerCase() ?? "?";
        counts.set(to, (counts.get(to) ?? 0) + 1);
      }
      return counts;
    },
    logLines: (pattern) =>
      readLog(log)
        .split("\n")
        .filter((line) => pattern.test(line)),
    async stop() {
      try {
        execFileSync(POSTFIX, ["-c", dir, "stop"], { stdio: "pipe" });
      } catch {
        // Already stopped.
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

function uidOf(user: string): number {
  return Number(execFileSync("id", ["-u", user]).toString().trim());
}
