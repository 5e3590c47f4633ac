#!/usr/bin/env node
// Tiny diagnostic: list zombie children of a pid (default: the parent of this script, e.g. the
// shell or supervisor that runs it). Exit code 1 when there is any.
//   node reaper/dist/zombie-check.js [pid]
import { zombieChildren } from './zombies.js';
import { readStat } from './identity.js';

const pid = process.argv[2] ? Number(process.argv[2]) : process.ppid;
if (!Number.isInteger(pid) || pid <= 0) {
  console.error('usage: zombie-check [pid]');
  process.exit(2);
}
const zombies = zombieChildren(pid);
for (const z of zombies) console.log(`${z}\t${readStat(z)?.comm ?? '?'}`);
console.error(`${zombies.length} zombie child(ren) of pid ${pid}`);
process.exit(zombies.length ? 1 : 0);
