/**
 * Every test file's environment (vitest setupFiles): supervisors started by a test have no HTTP
 * server unless the test asks for one (KANBAN_HTTP in its env). Parallel test supervisors would
 * otherwise all race for the default port 7433, and a test's board could be reached by another's client.
 */
process.env.KANBAN_HTTP ??= 'off';
