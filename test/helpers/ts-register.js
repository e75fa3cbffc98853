// Preloaded into the test processes (vitest.config.ts, execArgv): worker threads and child
// processes that the code under test starts from its .ts sources (the PGlite owner thread,
// initdb) inherit it and run them, as vitest runs the tests themselves.
import { register } from "node:module";

register("./ts-loader.js", import.meta.url);
