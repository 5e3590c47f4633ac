// prepack helper: remove build outputs whose source is gone, so a package never ships a stale
// module. `tsc -b` never deletes outputs of a renamed or removed src/X.ts (dist/X.js, .d.ts, maps).
// Runs in the package folder (npm runs lifecycle scripts there); touches only its dist/.
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const OUTPUT = /^(.*)\.(js|d\.ts)(\.map)?$/;

function prune(dir) {
  for (const e of readdirSync(join('dist', dir), { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      prune(path);
      continue;
    }
    const m = OUTPUT.exec(e.name);
    if (!m || !e.isFile()) continue;
    const source = join('src', dir, `${m[1]}.ts`);
    if (!existsSync(source)) {
      unlinkSync(join('dist', path));
      process.stderr.write(`prune-dist: removed dist/${path} (no ${source})\n`);
    }
  }
}

if (existsSync('dist') && existsSync('src')) prune('');
