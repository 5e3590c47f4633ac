#!/usr/bin/env -S node --max-semi-space-size=2 --
// The `kanban-supervisor` command that npm links onto PATH (node_modules/.bin, `npm install -g`,
// `npm link`). It is committed, plain JavaScript, so the link exists before anything is built:
// npm links bins before the repository's `prepare` step compiles the TypeScript. It only loads the
// compiled CLI (../dist/cli.js), which runs at import.
// --max-semi-space-size=2 (MB): V8's young generation sized for a daemon that allocates little
// (the default, 16 MB semi-spaces, kept ~20 MB more RSS for nothing; bench: 96 -> 82 MB with 64
// workers). The same flag is in the root's `npm start` and in the bench's supervisor (test/src/sup.ts).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli.js', import.meta.url);
// In a clone of the repository (sources next to this file), the fix is a build at its root.
const repoRoot = existsSync(new URL('../src/cli.ts', import.meta.url)) ? fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '') : null;
const fix = repoRoot
  ? `build it: \`npm run build\` in ${repoRoot} (\`npm install\` / \`npm ci\` there build it too)`
  : 'reinstall the kanban-supervisor package';

function notBuilt(missing) {
  process.stderr.write(`kanban-supervisor: the CLI is not built (${missing} is missing); ${fix}\n`);
  process.exit(1);
}

if (!existsSync(entry)) notBuilt(fileURLToPath(entry));
try {
  await import(entry.href);
} catch (e) {
  // A partial build (say board/dist missing) fails the import of the module graph: say so plainly.
  const missing = e && e.code === 'ERR_MODULE_NOT_FOUND' ? /Cannot find module '([^']+)'/.exec(String(e.message))?.[1] : undefined;
  if (repoRoot && missing && missing.startsWith(repoRoot) && missing.includes('/dist/')) notBuilt(missing);
  throw e;
}
