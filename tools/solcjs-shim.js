#!/usr/bin/env node
// Gives the npm `solc` package (solcjs, WebAssembly) the command-line interface of the
// native solc that py-solc-x and brownie expect: `--version` and `--standard-json`
// (input on stdin, output on stdout). Imports resolve against --base-path, the
// --allow-paths entries and the working directory, like the native compiler.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);

function optionValues(name) {
  const values = [];
  args.forEach((arg, i) => {
    if (arg === name && i + 1 < args.length) values.push(args[i + 1]);
    else if (arg.startsWith(name + '=')) values.push(arg.slice(name.length + 1));
  });
  return values;
}

if (args.includes('--version')) {
  // Same shape as native solc; py-solc-x parses the "Version:" line.
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solcjs-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

const roots = [
  ...optionValues('--base-path'),
  ...optionValues('--allow-paths').flatMap((v) => v.split(',')),
  ...optionValues('--include-path'),
  process.cwd(),
].filter(Boolean);

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.resolve(r, importPath));
  for (const candidate of candidates) {
    try {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    } catch (e) {
      // try the next root
    }
  }
  return { error: 'File not found: ' + importPath };
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const output = solc.compile(Buffer.concat(chunks).toString('utf8'), { import: findImports });
  process.stdout.write(output);
});
