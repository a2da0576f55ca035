import { Command, CommanderError } from 'commander';
import { ExitCode, KfarmError, errorText } from '../errors.js';
import { buildCommand } from './build-command.js';
import { cacheCommand } from './cache-command.js';
import { packageCommand } from './package-command.js';
import { verifyCommand } from './verify-command.js';
import { targetsCommand } from './targets-command.js';

export const exitCodesHelp = `
Exit codes:
  0    every requested target built (skipped ones allowed)
  1    some target failed, timed out or ran out of memory
  2    usage or configuration error (bad flag, dkms.conf, matrix file, unknown target)
  3    container engine unavailable
  130  interrupted (Ctrl-C); a partial report is written`;

/** The CLI entry: parses argv, runs one command, and turns every outcome into an exit code. */
export async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(
        '\nkfarm: interrupted; stopping builds and removing containers (Ctrl-C again to exit now)\n',
      );
      controller.abort(new KfarmError('KFARM_INTERRUPTED', 'interrupted'));
    } else {
      process.exit(ExitCode.interrupted);
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);

  const program = new Command('kfarm')
    .description('Build out-of-tree Linux kernel modules (DKMS packages) for many kernels, each in its own container.')
    .version(await packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .addHelpText('after', exitCodesHelp);
  let exitCode: number = ExitCode.ok;
  const setExit = (code: number) => {
    exitCode = code;
  };
  for (const command of [
    buildCommand(controller.signal, setExit),
    targetsCommand(controller.signal, setExit),
    verifyCommand(controller.signal, setExit),
    packageCommand(controller.signal, setExit),
    cacheCommand(),
  ]) {
    program.addCommand(configureTree(command));
  }

  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      )
        return ExitCode.ok;
      return ExitCode.usage;
    }
    if (error instanceof KfarmError) {
      process.stderr.write(`kfarm: ${error.message}\n`);
      if (process.env['DEBUG'] && error.cause)
        process.stderr.write(`${String((error.cause as Error).stack ?? error.cause)}\n`);
      return error.exitCode;
    }
    process.stderr.write(`kfarm: internal error: ${errorText(error)}\n${(error as Error).stack ?? ''}\n`);
    return ExitCode.targetFailed;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

/**
 * addCommand does not pass these settings down, and a subcommand that exits by itself would bypass the
 * exit-code contract (commander's own exit code for a bad flag is 1, ours is 2).
 */
function configureTree(command: Command): Command {
  command
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  for (const sub of command.commands) configureTree(sub);
  return command;
}

async function packageVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
