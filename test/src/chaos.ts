/**
 * `npm run chaos`: the entry of the chaos scripts (node test/dist/chaos.js [--short] [--only …]
 * [--keep]). The scenarios, their order and the final table are in chaos/ (chaos/main.ts).
 */
import './chaos/main.js';
