import { Command } from 'commander';
import { readJsonReport } from '../model/report.js';
import { pipelineExitCode } from '../pipeline/index.js';
import { compatibilityLines } from '../report/compat.js';
import { writeReports } from '../report/write-reports.js';

export function reportCommand(setExit: (code: number) => void): Command {
  return new Command('report')
    .description('write every report (junit.xml, summary.md, the analysis in report.json) anew from report.json')
    .argument('<out>', 'output directory of kfarm build, merge, verify or package')
    .option('--source <src>', 'the module source tree as given to kfarm build, for annotation paths (default .)')
    .addHelpText(
      'after',
      `
The same renderer runs after build, merge, verify and package: use it after editing report.json, after a
kfarm upgrade, or on an output copied from CI. Exit code: kfarm build's for that report.`,
    )
    .action(async (out: string, opts: { source?: string }) => {
      const report = await readJsonReport(out);
      const written = await writeReports(out, report, { sourceDir: opts.source ?? '.' });
      const lines = [
        ...compatibilityLines(written.compatibility),
        `reports: ${out}/report.json, junit.xml, summary.md`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      setExit(pipelineExitCode(report));
    });
}
