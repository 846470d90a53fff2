// Regenerate src/schema.d.ts from ../../docs/openapi.json into a temporary file and fail
// when it differs from the committed one (then run `npm run generate` and commit).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const spec = join(root, "..", "..", "docs", "openapi.json");
const committed = join(root, "src", "schema.d.ts");
const dir = mkdtempSync(join(tmpdir(), "keel-schema-"));
try {
  const fresh = join(dir, "schema.d.ts");
  const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");
  execFileSync(process.execPath, [cli, spec, "--output", fresh], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  if (readFileSync(fresh, "utf8") !== readFileSync(committed, "utf8")) {
    console.error("src/schema.d.ts is out of date with docs/openapi.json: run `npm run generate` in sdk/typescript and commit it");
    process.exit(1);
  }
  console.log("src/schema.d.ts matches docs/openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
