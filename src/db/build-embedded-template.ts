/**
 * `node build-embedded-template.js [DIR]`, the last step of `npm run build`: makes the data
 * directory template a first embedded start copies (see `buildEmbeddedTemplate`), by default
 * in dist/pglite-template. It runs initdb, so it runs in its own process, which then exits.
 */
import { buildEmbeddedTemplate, defaultTemplateDir } from "./open.js";

const templateDir = process.argv[2] ?? defaultTemplateDir();
buildEmbeddedTemplate(templateDir).then(
  (built) => {
    if (built) console.log(`embedded data directory template: ${templateDir}`);
    process.exit(0);
  },
  (error: unknown) => {
    console.error(
      `the embedded data directory template failed: ${error instanceof Error ? error.message : String(error)}`,
    );
    process.exit(1);
  },
);
