import { shellQuote } from '../util/shell.js';
import type { DkmsPlan } from './plan.js';

const array = (values: string[]) => `(${values.map(shellQuote).join(' ')})`;

/** The plan as bash assignments for images/runtime/build.sh, which `eval`s it. */
export function planScript(plan: DkmsPlan, env: Record<string, string>): string {
  const lines = Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  lines.push(
    `build_command=${shellQuote(plan.buildCommand)}`,
    `patches=${array(plan.patches)}`,
    `pre_build=${shellQuote(plan.preBuild)}`,
    `post_build=${shellQuote(plan.postBuild)}`,
    `build_depends=${array(plan.buildDepends)}`,
    `built_name=${array(plan.modules.map((m) => m.builtName))}`,
    `built_location=${array(plan.modules.map((m) => m.builtLocation))}`,
    `dest_name=${array(plan.modules.map((m) => m.destName))}`,
    `strip=${array(plan.modules.map((m) => (m.strip ? 'yes' : 'no')))}`,
  );
  return lines.join('\n') + '\n';
}
