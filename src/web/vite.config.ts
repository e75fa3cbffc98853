// The dashboard's build: a static single-page app in dist/web, served by the API server.
// `vite dev` proxies /api to a Lovage server on port 5000 (PORT's default).
import { defineConfig } from "vite";

const root = decodeURIComponent(new URL(".", import.meta.url).pathname);

export default defineConfig({
  root,
  base: "/",
  // No React plugin: Vite's esbuild compiles TSX with the automatic JSX runtime.
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "../../dist/web",
    emptyOutDir: true,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:5000" },
  },
});
