import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ExitCode, KfarmError, errorText } from '../model/errors.js';
import { packageDir } from '../util/paths.js';
import { printable } from '../util/shell.js';
import { buildCommand } from './build-command.js';
import { cacheCommand } from './cache-command.js';
import { mergeCommand } from './merge-command.js';
import { packageCommand } from './package-command.js';
import { planCommand } from './plan-command.js';
import { publishCommand } from './publish-command.js';
import { reportCommand } from './report-command.js';
import { targetsCommand } from './targets-command.js';
import { verifyCommand } from './verify-command.js';

export const exitCodesHelp = `
Exit codes:
  0    every requested target built (skipped ones allowed)
  1    some target failed, timed out or ran out of memory (or its module did not load)
  2    usage or configuration error (bad flag, dkms.conf, matrix file, unknown target, unusable --out)
  3    container engine unavailable, at the start or lost during the run
  4    the distribution archive could not be read (package index or package download)
  70   internal error: a bug in kfarm (run with --verbose or DEBUG=kfarm for the stack)
  130  interrupted (Ctrl-C); a partial report is written`;

/** The CLI entry: parses argv, runs one command, and turns every outcome into an exit code. */
export async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  const stopSignals = handleSignals(controller);
  let exitCode: number = ExitCode.ok;
  const program = await buildProgram(controller.signal, (code) => (exitCode = code));
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    return reportError(error, verbose(argv));
  } finally {
    stopSignals();
  }
}

/** Ctrl-C (or SIGTERM) once: stop builds, remove containers, write the partial report. Twice: exit now. */
function handleSignals(controller: AbortController): () => void {
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(ExitCode.interrupted);
    process.stderr.write('\nkfarm: interrupted; stopping builds and removing containers (Ctrl-C again to exit now)\n');
    controller.abort(new KfarmError('KFARM_INTERRUPTED', 'interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

async function buildProgram(signal: AbortSignal, setExit: (code: number) => void): Promise<Command> {
  const program = new Command('kfarm')
    .description('Build out-of-tree Linux kernel modules (DKMS packages) for many kernels, each in its own container.')
    .version(await packageVersion(), '-V, --version')
    .option('--verbose', 'on errors, print the underlying cause and stack (also: DEBUG=kfarm)')
    .addHelpText('after', exitCodesHelp);
  const commands = [
    buildCommand(signal, setExit),
    targetsCommand(signal, setExit),
    planCommand(signal),
    mergeCommand(setExit),
    verifyCommand(signal, setExit),
    packageCommand(signal, setExit),
    publishCommand(setExit),
    reportCommand(setExit),
    cacheCommand(),
  ];
  for (const command of commands) program.addCommand(command);
  return configureTree(program);
}

/**
 * addCommand does not pass these settings down, and a subcommand that exits by itself would bypass the
 * exit-code contract (commander's own exit code for a bad flag is 1, ours is 2). Usage errors are one line.
 */
function configureTree(command: Command): Command {
  command.exitOverride().configureOutput({
    writeErr: (text) => process.stderr.write(text),
    outputError: (text, write) =>
      write(`kfarm: ${text.replace(/^error: /, '').trim()} (see \`kfarm ${commandPath(command)}--help\`)\n`),
  });
  for (const sub of command.commands) configureTree(sub);
  return command;
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return names.length ? `${names.join(' ')} ` : '';
}

/** One line on stderr and the error's exit code; the cause and stack only when asked for. */
function reportError(error: unknown, verbose: boolean): number {
  if (error instanceof CommanderError) {
    const shown = ['commander.helpDisplayed', 'commander.version', 'commander.help'];
    return shown.includes(error.code) ? ExitCode.ok : ExitCode.usage;
  }
  if (error instanceof KfarmError) {
    // Messages may quote a build's words (a dkms.conf's stderr): one printable line, whatever they hold.
    process.stderr.write(`kfarm: ${printable(error.message)}\n`);
    if (verbose && error.cause !== undefined) process.stderr.write(`${describeCause(error.cause)}\n`);
    return error.exitCode;
  }
  const hint = verbose ? '' : ' (a bug in kfarm; run with --verbose for the stack)';
  process.stderr.write(`kfarm: internal error: ${errorText(error).split('\n')[0] ?? ''}${hint}\n`);
  if (verbose) process.stderr.write(`${describeCause(error)}\n`);
  return ExitCode.internal;
}

function describeCause(cause: unknown): string {
  return cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
}

/** `--verbose` anywhere on the command line, or DEBUG naming kfarm (`DEBUG=kfarm`, `DEBUG=*`, `DEBUG=1`). */
function verbose(argv: string[]): boolean {
  const debug = process.env['DEBUG'] ?? '';
  return argv.includes('--verbose') || /(^|,)\s*(kfarm\*?|\*|1)\s*(,|$)/.test(debug);
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
