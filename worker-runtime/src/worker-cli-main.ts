#!/usr/bin/env node
/**
 * Stand-alone entry of the worker CLI (`kanban-worker <command>`), equivalent to
 * `kanban-supervisor worker <command>`. A leading `worker` word is accepted and skipped.
 */
import { workerCli } from './cli.js';
import { guardStdio } from './runtime.js';

guardStdio();
const args = process.argv.slice(2);
if (args[0] === 'worker') args.shift();
const code = await workerCli(args, process.env);
process.exitCode = code;
