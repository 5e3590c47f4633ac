// Make the compiled CLI executable: npm links node_modules/.bin/kanban-supervisor
// before `prepare` builds it, so the mode bit cannot come from the link step.
import { chmodSync, existsSync } from 'node:fs';
const cli = new URL('../supervisor/dist/cli.js', import.meta.url);
if (existsSync(cli)) chmodSync(cli, 0o755);
