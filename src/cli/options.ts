import { InvalidArgumentError } from 'commander';

/** Commander parsers: one per option kind, each naming the bad value. */
export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
      throw new InvalidArgumentError(`${name} must be a positive whole number, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `512m`, `4g`, `2048k`, or plain bytes. */
export function byteSize(name: string) {
  return (value: string): number => {
    const match = /^(\d+)([kmg]?)i?b?$/i.exec(value.trim());
    const units: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
    const bytes = match ? Number(match[1]) * (units[match[2]?.toLowerCase() ?? ''] ?? 1) : NaN;
    if (!Number.isSafeInteger(bytes) || bytes < 64 * 1024 ** 2) {
      throw new InvalidArgumentError(
        `${name} must be a size of at least 64m, like 512m or 4g, got ${JSON.stringify(value)}`,
      );
    }
    return bytes;
  };
}

/** `30m`, `12h`, `7d`, `2w` → milliseconds. */
export function duration(name: string) {
  return (value: string): number => {
    const match = /^(\d+)([smhdw])$/.exec(value.trim());
    const unit: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
    if (!match?.[1] || !match[2])
      throw new InvalidArgumentError(
        `${name} must be a duration like 30m, 12h, 7d or 2w, got ${JSON.stringify(value)}`,
      );
    return Number(match[1]) * (unit[match[2]] ?? 0);
  };
}

/** Rows as aligned columns (two spaces apart, no trailing blanks), one line each: the CLI's plain tables. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
