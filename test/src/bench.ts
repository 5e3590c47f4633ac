/**
 * `npm run bench`: the entry of the benchmark scripts (node test/dist/bench.js [--short] [--only …]
 * [--keep]). The benchmarks, their order and the final table are in bench/ (bench/main.ts).
 */
import './bench/main.js';
