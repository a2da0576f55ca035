import { Command } from 'commander';
import { moduleTitle, type FarmReport } from '../model/report.js';
import { mergeOutputs, pipelineExitCode } from '../pipeline/index.js';

export function mergeCommand(setExit: (code: number) => void): Command {
  return new Command('merge')
    .description('merge the outputs of several kfarm build runs (e.g. the shards of kfarm plan) into one')
    .argument('<dirs...>', 'output directories of kfarm build')
    .requiredOption('-o, --out <dir>', 'a new or empty directory for the merged output')
    .option('--json', 'print the merged report.json to stdout instead of a summary')
    .action(async (dirs: string[], opts: { out: string; json?: boolean }) => {
      const { report, reportPath } = await mergeOutputs({ dirs, out: opts.out });
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : mergeSummary(report, dirs, reportPath));
      setExit(pipelineExitCode(report));
    });
}

function mergeSummary(report: FarmReport, dirs: string[], reportPath: string): string {
  const counts = Object.entries(report.counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ');
  const partial = report.partial ? ' (partial: some run was stopped early)' : '';
  const head = `${moduleTitle(report)}: ${dirs.length} output(s) merged, ${report.targets.length} target(s)`;
  return `${head}: ${counts || 'none'}${partial}\nreports: ${reportPath}, junit.xml, summary.md\n`;
}
