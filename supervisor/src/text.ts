/** Terminal-safe text for human output: policies' `printable` (shared with the worker CLI). */
export { printable, printableLines } from '@kanban-supervisor/policies';
