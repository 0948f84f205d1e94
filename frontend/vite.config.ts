import { defineConfig } from "vitest/config";

// Served by the gateway at /dashboard/; `npm run dev` proxies the API to a local gateway (make run).
export default defineConfig({
  base: "/dashboard/",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    // The gateway's Content-Security-Policy allows only same-origin scripts: no inline module preload shim.
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 400,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
