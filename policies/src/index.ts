export * from './config.js';
export * from './decisions.js';
export * from './storm.js';
export * from './limits.js';
export * from './reasons.js';
export * from './schedule.js';
export * from './exit-skills.js';
export * from './beat-slot.js';
