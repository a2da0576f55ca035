#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

// Nothing left to run while main() has not finished means a promise that can never settle (a bug): say so and
// exit 70 (internal error) instead of Node's silent exit 13.
let finished = false;
process.on('beforeExit', () => {
  if (finished) return;
  process.stderr.write('kfarm: internal error: the run stopped waiting on work that can never finish (a bug)\n');
  process.exit(70);
});
const code = await main(process.argv);
finished = true;
process.exitCode = code;
// Everything kfarm waits on is bounded, but a request left open to a frozen engine must not keep the process
// alive after the verdict: give stdout a moment to drain, then leave. Unreferenced: a clean exit is not delayed.
setTimeout(() => process.exit(code), 5000).unref();
