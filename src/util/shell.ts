/** A word for sh and bash: as it is when plainly safe, else single-quoted (the quoting with no special characters). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./=:,+%@-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
