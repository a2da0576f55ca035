/** A word for sh and bash: as it is when plainly safe, else single-quoted (the quoting with no special characters). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./=:,+%@-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * One line fit for a terminal from text a build produced (make.log lines, a script's last words): ANSI
 * sequences dropped, other control characters (a newline, a bare ESC, C1 codes) shown as `\xNN`, so a
 * hostile module cannot move the cursor, retitle the window or forge kfarm's own lines.
 */
export function printable(text: string): string {
  // Control characters are this function's subject.
  /* eslint-disable no-control-regex */
  return text
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  /* eslint-enable no-control-regex */
}
