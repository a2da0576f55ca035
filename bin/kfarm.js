#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

const code = await main(process.argv);
process.exitCode = code;
// Everything kfarm waits on is bounded, but a request left open to a frozen engine must not keep the process
// alive after the verdict: give stdout a moment to drain, then leave. Unreferenced: a clean exit is not delayed.
setTimeout(() => process.exit(code), 5000).unref();
