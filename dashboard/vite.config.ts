// Vite builds the dashboard into dist/, which the control API embeds (control-api/src/dashboard).
// Hashed file names, no inline scripts (the CSP forbids them), no source maps in the binary.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a local control API (make up).
    proxy: { "/api": process.env.TOLLGATE_CONTROL_API_URL ?? "http://127.0.0.1:58083" },
  },
});
