/**
 * The environment the README and pack tests give `npm` / `npx`: what a user's shell would have, not
 * what `npm test` leaves behind. Under `npm test`, PATH starts with the repository's
 * node_modules/.bin (where `kanban-supervisor` is the repository's own build) and npm_config_*
 * variables carry the outer npm's settings; both would let a broken install pass unnoticed.
 */
import { CONFIG_VARS } from '@kanban-supervisor/policies';

export function npmEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const drop = new Set(CONFIG_VARS.map((v) => v.env));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS' || k.startsWith('KANBAN_') || drop.has(k) || k === 'LOG_FORMAT') continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(':')
    .filter((p) => p !== '' && !/[\\/]node_modules[\\/]/.test(`${p}/`))
    .join(':');
  // npx must use the project's own bin, never fetch a package of that name from the registry.
  env.npm_config_yes = 'false';
  env.npm_config_update_notifier = 'false';
  env.npm_config_fund = 'false';
  env.npm_config_audit = 'false';
  return { ...env, ...extra };
}
