// Packages one JavaScript guest into a component with componentize-js.
// Run by zerofn-guest-build (src/jsguest.rs) from a scratch directory whose
// node_modules/ links to the npm prefix holding componentize-js:
//
//   node componentize.mjs SOURCE WIT_DIR WORLD OUT DISABLED_FEATURES
//
// DISABLED_FEATURES is a comma-separated list of StarlingMonkey features
// (stdio, random, clocks, http, fetch-event) left out of the engine.
import { writeFile } from "node:fs/promises";
import { componentize } from "@bytecodealliance/componentize-js";

const args = process.argv.slice(2);
if (args.length !== 5) {
  console.error("usage: node componentize.mjs SOURCE WIT_DIR WORLD OUT DISABLED_FEATURES");
  process.exit(2);
}
const [sourcePath, witPath, worldName, out, disabled] = args;
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName,
  disableFeatures: disabled.split(",").filter(Boolean),
});
await writeFile(out, component);
