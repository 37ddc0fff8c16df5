/**
 * Text from the database made safe for a terminal: control characters (ESC sequences that
 * would recolour, move the cursor or retitle the window, carriage returns that overwrite a
 * line, BEL, …) and lone surrogates are shown escaped (`\x1b`, `\r`, `\u{d800}`), never sent raw.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\p{Cs}/gu, (c) => {
    const code = c.codePointAt(0) as number;
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
