// Make the compiled CLI executable. Workers run it directly as "$KANBAN_CLI" (its path, with a
// `#!/usr/bin/env node` line), so it needs the mode bit in the repository and in the packed
// tarball (npm pack keeps it). The command on PATH is supervisor/bin/kanban-supervisor.js, which
// is committed executable and loads this file.
import { chmodSync, existsSync } from 'node:fs';
const cli = new URL('../supervisor/dist/cli.js', import.meta.url);
if (existsSync(cli)) chmodSync(cli, 0o755);
