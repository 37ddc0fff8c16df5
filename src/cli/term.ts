/** Terminal output of the CLI: colour only on a TTY (and never with NO_COLOR), aligned tables, progress. */

export interface Style {
  bold(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  dim(text: string): string;
}

export function styleFor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): Style {
  const on = stream.isTTY === true && env['NO_COLOR'] === undefined && env['TERM'] !== 'dumb';
  const wrap = (open: number, close: number) => (text: string) => (on ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { bold: wrap(1, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), dim: wrap(2, 22) };
}

// eslint-disable-next-line no-control-regex -- the escape character is the point: SGR codes take no room
const ANSI = /\x1b\[\d+m/g;

/** An aligned text table: a header row, then one line per row (cells already strings). */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, style?: Style): string {
  // Width from the visible text (escape codes do not take room).
  const visible = (s: string) => s.replace(ANSI, '').length;
  const widths = headers.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - visible(c))))
      .join('  ')
      .trimEnd();
  const head = line(headers);
  return [style ? style.bold(head) : head, ...rows.map(line)].join('\n') + '\n';
}

export function bar(done: number, total: number): string {
  const width = 24;
  const share = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(share * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}%`;
}

export interface ProgressUpdate {
  label: string;
  done: number;
  total: number;
  rowsPerSecond?: number;
  etaSeconds?: number | null;
  extra?: string;
}

/**
 * Progress of long work on stderr: a redrawn bar with rate and ETA on a terminal, a plain line
 * at most every `plainEveryMs` (and on each new label) otherwise, nothing with --json.
 */
export function makeProgress(options: { json: boolean; stream?: NodeJS.WriteStream; plainEveryMs?: number }) {
  const stream = options.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const every = options.plainEveryMs ?? 2_000;
  let lastPlain = 0;
  let lastLabel = '';
  const started = Date.now();
  let labelStarted = started;
  return {
    update(p: ProgressUpdate) {
      if (options.json) return;
      if (p.label !== lastLabel) labelStarted = Date.now();
      const elapsed = Math.max((Date.now() - labelStarted) / 1000, 0.001);
      const rate = p.rowsPerSecond ?? Math.round(p.done / elapsed);
      const eta = p.etaSeconds !== undefined ? p.etaSeconds : rate > 0 && p.total > p.done ? Math.ceil((p.total - p.done) / rate) : null;
      const text = `${p.label} ${bar(p.done, p.total)} ${p.done}/${p.total} ${rate} rows/s${eta !== null ? ` ETA ${eta}s` : ''}${p.extra ? ` ${p.extra}` : ''}`;
      if (tty) stream.write(`\r\x1b[2K${text}`);
      else if (p.label !== lastLabel || Date.now() - lastPlain >= every || (p.total > 0 && p.done >= p.total)) {
        stream.write(`${text}\n`);
        lastPlain = Date.now();
      }
      lastLabel = p.label;
    },
    /** A one-off status line (e.g. a wait), redrawn on a TTY, printed otherwise. */
    note(text: string) {
      if (options.json) return;
      if (tty) stream.write(`\r\x1b[2K${text}`);
      else stream.write(`${text}\n`);
    },
    done() {
      if (!options.json && tty) stream.write('\r\x1b[2K');
    },
  };
}
