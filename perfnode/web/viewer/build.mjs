// Bundle the viewer with esbuild into dist/ (run by `npm run build`, which ./run.sh setup calls).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  minify: true,
  sourcemap: true,
  target: ["es2020"],
  outfile: "dist/viewer.js",
  logLevel: "warning",
});
for (const f of ["index.html", "viewer.css"]) copyFileSync(f, `dist/${f}`);
console.log("viewer built into dist/");
