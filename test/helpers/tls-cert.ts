/**
 * A throw-away certificate authority and a server certificate it signed for 127.0.0.1 and
 * localhost, made with `openssl` in a temporary directory: the CA file is what a test points
 * LOVAGE_SMTP_CA_FILE at, the key and certificate are what its TLS test server presents.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificates {
  /** The CA certificate's file (PEM). */
  caFile: string;
  ca: string;
  key: string;
  cert: string;
  /** A second, unrelated CA: a client that trusts only it must refuse the server. */
  otherCaFile: string;
  remove(): void;
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "lovage-tls-"));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const makeCa = (name: string) =>
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      at(`${name}.key`),
      "-out",
      at(`${name}.pem`),
    );
  makeCa("ca");
  makeCa("other-ca");
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    at("server.key"),
    "-out",
    at("server.csr"),
  );
  writeFileSync(at("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    at("server.csr"),
    "-CA",
    at("ca.pem"),
    "-CAkey",
    at("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    at("ext.cnf"),
    "-out",
    at("server.pem"),
  );
  return {
    caFile: at("ca.pem"),
    ca: readFileSync(at("ca.pem"), "utf8"),
    key: readFileSync(at("server.key"), "utf8"),
    cert: readFileSync(at("server.pem"), "utf8"),
    otherCaFile: at("other-ca.pem"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
