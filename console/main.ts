import { render, type ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { html } from 'htm/preact';
import type uPlot from 'uplot';
import { api, ApiError, savedToken, saveToken, type Capabilities, type DeadRow, type Flags, type FlagView, type History, type Job, type Status, type TableStatus } from './api.js';
import { CHARTS, drawChart } from './charts.js';


const STAGES = ['source-only', 'dual-write', 'target-primary', 'target-only'] as const;
const POLL_MS = 2_000;

type Auth = { state: 'checking' } | { state: 'signed-in' } | { state: 'needs-token'; message: string | null };

interface Confirmation {
  title: string;
  text: string;
  confirmLabel: string;
  run: () => Promise<void>;
}

/** Words for an error from the server (or from the network). */
function describe(error: unknown): string {
  if (error instanceof ApiError) return error.status ? `${error.message} (HTTP ${error.status})` : error.message;
  return (error as Error).message ?? String(error);
}

function App() {
  const [auth, setAuth] = useState<Auth>({ state: 'checking' });
  const [status, setStatus] = useState<Status | null>(null);
  const [flags, setFlags] = useState<Flags | null>(null);
  const [capabilities, setCapabilities] = useState<Capabilities | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [confirmation, setConfirmation] = useState<Confirmation | null>(null);
  const [updatedAt, setUpdatedAt] = useState<Date | null>(null);

  const onAuthError = useCallback((e: unknown): boolean => {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      setAuth({
        state: 'needs-token',
        message:
          e.status === 403
            ? 'That token is not the admin token (a data token cannot use the console). Sign in with TANDEM_ADMIN_TOKEN.'
            : savedToken()
              ? `The token was refused: ${e.message}`
              : null,
      });
      return true;
    }
    return false;
  }, []);

  const refresh = useCallback(async () => {
    try {
      const [s, f] = await Promise.all([api<Status>('GET', '/admin/status'), api<Flags>('GET', '/admin/flags')]);
      setStatus(s);
      setFlags(f);
      setUpdatedAt(new Date());
      setError(null);
      setAuth((a) => (a.state === 'signed-in' ? a : { state: 'signed-in' }));
    } catch (e) {
      if (!onAuthError(e)) setError(`Could not refresh the board: ${describe(e)}`);
    }
  }, [onAuthError]);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  useEffect(() => {
    if (auth.state !== 'signed-in') return undefined;
    api<Capabilities>('GET', '/admin/capabilities').then(setCapabilities, (e: unknown) => onAuthError(e) || setError(describe(e)));
    const timer = setInterval(() => void refresh(), POLL_MS);
    return () => clearInterval(timer);
  }, [auth.state, refresh, onAuthError]);

  const ask = (c: Confirmation) => setConfirmation(c);
  const act = async (what: string, run: () => Promise<string>) => {
    try {
      const message = await run();
      setNotice(message);
      setError(null);
      await refresh();
    } catch (e) {
      if (!onAuthError(e)) setError(`${what} failed: ${describe(e)}`);
    }
  };

  if (auth.state === 'checking') return html`<main class="page"><p>Loading…</p></main>`;
  if (auth.state === 'needs-token') {
    return html`<${SignIn}
      message=${auth.message}
      onToken=${(token: string) => {
        saveToken(token);
        setAuth({ state: 'checking' });
        void refresh();
      }}
    />`;
  }
  const table = status?.tables.find((t) => t.table === selected) ?? null;
  return html`
    <header class="top">
      <h1>Tandem console</h1>
      <p class="meta">
        ${status ? html`v${status.version} · up ${formatDuration(status.uptimeSeconds)} · source ${status.stores['source']?.dialect} → target ${status.stores['target']?.dialect}` : ''}
        ${updatedAt ? html` · updated <time datetime=${updatedAt.toISOString()}>${updatedAt.toLocaleTimeString()}</time>` : ''}
      </p>
      ${savedToken()
        ? html`<button type="button" class="secondary" onClick=${() => {
            saveToken(null);
            setAuth({ state: 'needs-token', message: 'Signed out.' });
          }}>Sign out</button>`
        : ''}
    </header>
    <main class="page">
      <div aria-live="assertive">${error ? html`<p class="banner error" role="alert"><strong>Error:</strong> ${error}</p>` : ''}</div>
      <div aria-live="polite">${notice ? html`<p class="banner notice" role="status">${notice} <button type="button" class="link" onClick=${() => setNotice(null)}>Dismiss</button></p>` : ''}</div>
      ${status ? html`<${Board} status=${status} selected=${selected} onSelect=${setSelected} />` : html`<p>Loading the board…</p>`}
      ${status && flags ? html`<${FlagsSummary} status=${status} flags=${flags} />` : ''}
      ${table && flags && capabilities
        ? html`<${TableDetail}
            key=${table.table}
            table=${table}
            status=${status as Status}
            flags=${flags}
            capabilities=${capabilities}
            ask=${ask}
            act=${act}
            onAuthError=${onAuthError}
            onError=${setError}
            onClose=${() => setSelected(null)}
          />`
        : ''}
    </main>
    ${confirmation ? html`<${ConfirmDialog} confirmation=${confirmation} onClose=${() => setConfirmation(null)} />` : ''}
  `;
}

function SignIn({ message, onToken }: { message: string | null; onToken: (token: string) => void }) {
  const [token, setToken] = useState('');
  return html`
    <main class="page sign-in">
      <h1>Tandem console</h1>
      <form
        onSubmit=${(e: Event) => {
          e.preventDefault();
          if (token.trim()) onToken(token.trim());
        }}
      >
        <p>Sign in with the admin token (<code>TANDEM_ADMIN_TOKEN</code>). It is kept for this browser tab only and sent as a header with each call.</p>
        ${message ? html`<p class="banner error" role="alert">${message}</p>` : ''}
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required value=${token} onInput=${(e: Event) => setToken((e.target as HTMLInputElement).value)} />
        <button type="submit">Sign in</button>
      </form>
    </main>
  `;
}

function Board({ status, selected, onSelect }: { status: Status; selected: string | null; onSelect: (t: string) => void }) {
  const breaker = status.stores['target']?.breaker ?? 'unknown';
  return html`
    <section aria-labelledby="board-title">
      <h2 id="board-title">Migration board</h2>
      <div class="board-wrap">
        <table class="board">
          <caption class="visually-hidden">One row per table: stage, routing, health and last verify</caption>
          <thead>
            <tr>
              <th scope="col">Table</th>
              <th scope="col">Stage</th>
              <th scope="col">Primary</th>
              <th scope="col">Reads from target / shadow</th>
              <th scope="col">Target data</th>
              <th scope="col">Outbox pending / dead</th>
              <th scope="col">Lag</th>
              <th scope="col">Consistency</th>
              <th scope="col">Breakers</th>
              <th scope="col">Safety brake</th>
              <th scope="col">Last verify</th>
              <th scope="col"><span class="visually-hidden">Details</span></th>
            </tr>
          </thead>
          <tbody>
            ${status.tables.map(
              (t) => html`
                <tr key=${t.table} data-table=${t.table} class=${selected === t.table ? 'selected' : ''}>
                  <th scope="row" data-label="Table">${t.table}${t.targetTable !== t.table ? html`<span class="sub"> → ${t.targetTable}</span>` : ''}</th>
                  <td data-label="Stage" class="stage-cell"><${Pipeline} stage=${t.stage} />${t.flagConflict ? html`<div class="warn-text">Flags refused: ${t.flagConflict}</div>` : ''}</td>
                  <td data-label="Primary">${t.primary}</td>
                  <td data-label="Reads from target / shadow" class="reads">${t.readTargetPercent} % / ${t.shadowReadPercent} %</td>
                  <td data-label="Target data">${t.stale ? html`<span class="badge bad">STALE</span> <span class="why">${t.staleReason ?? ''}</span>` : html`<span class="badge ok">current</span>`}</td>
                  <td data-label="Outbox pending / dead" class="outbox">${t.outbox.pending} / ${t.outbox.dead > 0 ? html`<span class="badge bad">${t.outbox.dead} dead</span>` : '0'}</td>
                  <td data-label="Lag">${t.outbox.lagSeconds.toFixed(1)} s</td>
                  <td data-label="Consistency">${t.consistency.samples > 0 ? `${(t.consistency.ratio * 100).toFixed(2)} %` : '—'} <span class="sub">(${t.consistency.samples} samples)</span></td>
                  <td data-label="Breakers">target: ${breaker === 'closed' ? html`<span class="badge ok">closed</span>` : html`<span class="badge bad">${breaker}</span>`}</td>
                  <td data-label="Safety brake" class="brake">${brakeText(t)}</td>
                  <td data-label="Last verify" class="last-verify">${verifyText(t)}</td>
                  <td data-label="Details">
                    <button type="button" aria-expanded=${selected === t.table} aria-controls="detail" onClick=${() => onSelect(t.table)}>
                      Details<span class="visually-hidden"> and actions for ${t.table}</span>
                    </button>
                  </td>
                </tr>
              `,
            )}
          </tbody>
        </table>
      </div>
      ${status.flags.killSwitch ? html`<p class="banner error" role="status"><strong>Kill switch ON:</strong> every read is served by the primary; no shadow reads.</p>` : ''}
      ${!status.flags.synchronized || status.flags.lastError
        ? html`<p class="banner warn">Flags (${status.flags.origin}): ${status.flags.synchronized ? 'loaded' : 'NOT loaded'}${status.flags.lastError ? `, last error: ${status.flags.lastError}` : ''}</p>`
        : ''}
    </section>
  `;
}

function Pipeline({ stage }: { stage: string }) {
  return html`
    <ol class="pipeline" aria-label="Pipeline">
      ${STAGES.map(
        (s) => html`<li key=${s} class=${s === stage ? 'current' : STAGES.indexOf(s) < STAGES.indexOf(stage as (typeof STAGES)[number]) ? 'past' : ''} aria-current=${s === stage ? 'step' : undefined}>
          ${s === stage ? html`<strong>${s}</strong>` : html`<span class="other">${s}</span>`}
        </li>`,
      )}
    </ol>
  `;
}

function brakeText(t: TableStatus): ComponentChildren {
  const b = t.brake;
  if (!b) return '—';
  if (b.active) {
    return html`<span class="badge bad">TRIPPED</span> ${b.signal}: ${formatSignal(b.signal, b.value)} past ${formatSignal(b.signal, b.threshold)}`;
  }
  return html`<span class="badge ok">off</span> <span class="sub">errors ${(b.window.targetErrorRate * 100).toFixed(1)} %, lag ${b.window.lagSeconds.toFixed(0)} s</span>`;
}

function formatSignal(signal: string | null, value: number | null): string {
  if (value === null) return '?';
  if (signal === 'lag') return `${value.toFixed(1)} s`;
  return `${(value * 100).toFixed(2)} %`;
}

function verifyText(t: TableStatus): ComponentChildren {
  const v = t.lastVerify;
  if (!v) return html`<span class="sub">never</span>`;
  return html`${v.clean ? html`<span class="badge ok">clean</span>` : html`<span class="badge bad">DRIFT</span>`}
    <span class="sub"> ${new Date(v.finishedAt).toLocaleTimeString()}: ${v.matching} matching, ${v.mismatched} mismatched, ${v.missingInTarget} missing, ${v.extraInTarget} extra</span>`;
}

function FlagsSummary({ status, flags }: { status: Status; flags: Flags }) {
  if (flags.editable) {
    return html`<p class="meta">Flags come from the local file <code>${flags.file}</code>; change them under each table's details.</p>`;
  }
  return html`
    <section aria-labelledby="flags-title">
      <h2 id="flags-title">Flags (Unleash)</h2>
      <p>Flags come from Unleash: change them there. ${flags.unleashUi ? html`<a href=${flags.unleashUi}>Open the Unleash UI</a>` : ''}</p>
      <ul>
        ${flags.tables.flatMap((t) => t.flags).map((f) => html`<li key=${f.name}>${f.link ? html`<a href=${f.link}>${f.name}</a>` : f.name}: ${flagValue(f)}</li>`)}
      </ul>
      <p class="sub">${status.tables.length} table(s).</p>
    </section>
  `;
}

function flagValue(f: FlagView): string {
  if (f.kind === 'percent') return `${f.percent ?? 0} %`;
  return f.enabled ? 'on' : 'off';
}

interface DetailProps {
  table: TableStatus;
  status: Status;
  flags: Flags;
  capabilities: Capabilities;
  ask: (c: Confirmation) => void;
  act: (what: string, run: () => Promise<string>) => Promise<void>;
  onAuthError: (e: unknown) => boolean;
  onError: (message: string) => void;
  onClose: () => void;
}

function TableDetail(props: DetailProps) {
  const { table } = props;
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  return html`
    <section id="detail" class="detail" aria-labelledby="detail-title">
      <div class="detail-head">
        <h2 id="detail-title" tabindex="-1" ref=${heading}>${table.table}: details and actions</h2>
        <button type="button" class="secondary" onClick=${props.onClose}>Close<span class="visually-hidden"> the details of ${table.table}</span></button>
      </div>
      <${Charts} ...${props} />
      <div class="grid">
        <${FlagControls} ...${props} />
        <${Jobs} ...${props} />
        <${BrakeControl} ...${props} />
        <${DeadRows} ...${props} />
        <${CutoverActions} ...${props} />
      </div>
    </section>
  `;
}

function FlagControls({ table, flags, ask, act }: DetailProps) {
  const tableFlags = flags.tables.find((t) => t.table === table.table)?.flags ?? [];
  if (!flags.editable) {
    return html`<div class="card"><h3>Flags</h3><p>Flags come from Unleash; change them there:</p>
      <ul>${tableFlags.map((f) => html`<li key=${f.name}>${f.link ? html`<a href=${f.link}>${f.name}</a>` : f.name}: ${flagValue(f)}</li>`)}</ul></div>`;
  }
  return html`
    <div class="card">
      <h3>Flags</h3>
      <p class="sub">Written atomically to <code>${flags.file}</code>; Tandem reloads it within seconds.</p>
      ${tableFlags.map((f) =>
        f.kind === 'percent'
          ? html`<${PercentFlag} key=${f.name} flag=${f} ask=${ask} act=${act} />`
          : html`<${SwitchFlag} key=${f.name} flag=${f} ask=${ask} act=${act} />`,
      )}
    </div>
  `;
}

const FLAG_WORDS: Record<string, string> = {
  dualWrite: 'Dual-write',
  readTarget: 'Reads served by the target',
  shadowRead: 'Shadow reads (compared)',
  targetPrimary: 'Target primary (cutover)',
  retireSource: 'Retire the source',
};

function PercentFlag({ flag, ask, act }: { flag: FlagView; ask: DetailProps['ask']; act: DetailProps['act'] }) {
  const current = flag.percent ?? 0;
  const [value, setValue] = useState(current);
  // A change made elsewhere (CLI, file, another tab) moves the slider too.
  useEffect(() => setValue(current), [current]);
  const id = `flag-${flag.name.replace(/[^A-Za-z0-9]/g, '-')}`;
  const changed = value !== current;
  return html`
    <div class="flag percent">
      <label for=${id}>${FLAG_WORDS[flag.role] ?? flag.role} <span class="sub">(${flag.name})</span></label>
      <div class="slider-row">
        <input id=${id} type="range" min="0" max="100" step="1" value=${value} aria-valuetext=${`${value} percent`}
          onInput=${(e: Event) => setValue(Number((e.target as HTMLInputElement).value))} />
        <output for=${id}>${value} %</output>
        <button type="button" disabled=${!changed} onClick=${() =>
          ask({
            title: `Set ${flag.name} to ${value} %`,
            text: `${FLAG_WORDS[flag.role] ?? flag.role} goes from ${current} % to ${value} %. ${
              flag.role === 'readTarget' ? `About ${value} % of reads will be served by the target while it is trusted (not stale, breaker closed, brake off).` : `About ${value} % of reads will also run on the other store and be compared.`
            }`,
            confirmLabel: `Set to ${value} %`,
            run: () => act(`Setting ${flag.name}`, async () => {
              await api('PUT', `/admin/flags/${encodeURIComponent(flag.name)}`, { value });
              return `${flag.name} set to ${value} %.`;
            }),
          })}>Apply<span class="visually-hidden"> ${flag.name}</span></button>
      </div>
      <p class="sub">Now ${current} %.</p>
    </div>
  `;
}

function SwitchFlag({ flag, ask, act }: { flag: FlagView; ask: DetailProps['ask']; act: DetailProps['act'] }) {
  const next = !flag.enabled;
  return html`
    <div class="flag switch">
      <span>${FLAG_WORDS[flag.role] ?? flag.role} <span class="sub">(${flag.name})</span>: <strong>${flag.enabled ? 'on' : 'off'}</strong></span>
      <button type="button" class="secondary" onClick=${() =>
        ask({
          title: `Turn ${flag.name} ${next ? 'on' : 'off'}`,
          text: switchConsequence(flag.role, next),
          confirmLabel: `Turn ${next ? 'on' : 'off'}`,
          run: () => act(`Setting ${flag.name}`, async () => {
            await api('PUT', `/admin/flags/${encodeURIComponent(flag.name)}`, { value: next });
            return `${flag.name} turned ${next ? 'on' : 'off'}.`;
          }),
        })}>Turn ${next ? 'on' : 'off'}<span class="visually-hidden"> ${flag.name}</span></button>
    </div>
  `;
}

function switchConsequence(role: string, on: boolean): string {
  if (role === 'dualWrite') {
    return on
      ? 'Writes will also be copied to the target through the outbox. If the source already holds rows, the target is marked stale until a backfill and a clean verify.'
      : 'Writes stop reaching the target at once; it starts to drift and is marked stale (a verify or backfill must pass before target reads resume).';
  }
  if (role === 'targetPrimary') return on ? 'Asks Tandem to make the target the primary: the fenced switch (freeze, drain, identity, promote), followed by tandem cutover <table>. Off again rolls back the same way.' : 'The source stays primary.';
  if (role === 'retireSource') return on ? 'Asks Tandem to stop copying to the source (needs target-primary).' : 'The source keeps receiving copies.';
  return on ? 'Turns the flag on.' : 'Turns the flag off.';
}

function Jobs({ table, ask, onAuthError, onError }: DetailProps) {
  const [job, setJob] = useState<Job | null>(null);
  useEffect(() => {
    api<{ jobs: Job[] }>('GET', '/admin/jobs').then(
      (r) => setJob(r.jobs.find((j) => j.table === table.table) ?? null),
      (e: unknown) => onAuthError(e) || onError(describe(e)),
    );
  }, [table.table]);
  useEffect(() => {
    if (!job || job.state !== 'running') return undefined;
    const timer = setInterval(() => {
      api<Job>('GET', `/admin/jobs/${job.id}`).then(setJob, (e: unknown) => onAuthError(e) || onError(`Following the ${job.kind}: ${describe(e)}`));
    }, 400);
    return () => clearInterval(timer);
  }, [job?.id, job?.state]);
  const start = (kind: 'verify' | 'backfill', options: Record<string, unknown>, title: string, text: string) =>
    ask({
      title,
      text,
      confirmLabel: title,
      run: async () => {
        try {
          setJob(await api<Job>('POST', `/admin/tables/${encodeURIComponent(table.table)}/jobs`, { kind, ...options }));
        } catch (e) {
          if (!onAuthError(e)) onError(`${title} failed: ${describe(e)}`);
        }
      },
    });
  const running = job?.state === 'running';
  const [rate, setRate] = useState('');
  const rateValue = /^\d+$/.test(rate) && Number(rate) > 0 ? Number(rate) : undefined;
  const rateId = `backfill-rate-${table.table}`;
  return html`
    <div class="card">
      <h3>Verify and backfill</h3>
      <div class="buttons">
        <button type="button" disabled=${running} onClick=${() =>
          start('verify', { repair: false }, `Verify ${table.table}`, `Compares map(source) with the target, chunk by chunk, and reports the differences. Nothing is changed. A clean verify of a dual-writing table clears its stale mark.`)}>Verify</button>
        <button type="button" disabled=${running} onClick=${() =>
          start('verify', { repair: true }, `Verify and repair ${table.table}`, `Compares map(source) with the target and re-enqueues the source image of every differing key (under a row lock), so the outbox worker rewrites those rows in the target.`)}>Verify + repair</button>
        <button type="button" disabled=${running} onClick=${() =>
          start(
            'backfill',
            rateValue ? { rate: rateValue } : {},
            `Backfill ${table.table}`,
            `Copies the source's existing rows to the target in key order, only keys the target has never received (a live write is never overwritten), ${
              rateValue ? `at most ${rateValue} rows/s` : 'as fast as the stores allow'
            }. Resumes from its checkpoint. Needs dual-write on.`,
          )}>Backfill</button>
      </div>
      <p class="rate-row">
        <label for=${rateId}>Backfill rate limit (rows/s, empty for none)</label>
        <input id=${rateId} type="number" min="1" step="1" inputmode="numeric" value=${rate} onInput=${(e: Event) => setRate((e.target as HTMLInputElement).value)} />
      </p>
      ${job ? html`<${JobProgress} job=${job} />` : html`<p class="sub">No job has run for this table since Tandem started.</p>`}
    </div>
  `;
}

function JobProgress({ job }: { job: Job }) {
  const p = job.progress;
  const share = p.total > 0 ? Math.min(1, p.done / p.total) : job.state === 'running' ? 0 : 1;
  const r = job.result;
  return html`
    <div class="job" data-state=${job.state} aria-live="polite">
      <p><strong>${job.kind}${job.options['repair'] ? ' + repair' : ''}</strong>: <span class="job-state">${job.state}</span>${job.state === 'running' ? html` (${p.phase})` : ''}</p>
      <label class="visually-hidden" for=${`progress-${job.id}`}>${job.kind} progress</label>
      <progress id=${`progress-${job.id}`} max="100" value=${Math.round(share * 100)}>${Math.round(share * 100)} %</progress>
      <p class="sub job-figures">
        ${job.state === 'running' || !r
          ? `${p.phase}: ${p.done} / ${p.total} rows · ${p.rowsPerSecond} rows/s${p.etaSeconds !== null ? ` · ETA ${p.etaSeconds} s` : ''}`
          : `done in ${formatMs(Number(r['durationMs'] ?? 0))} · ${String(r['rowsPerSecond'] ?? p.rowsPerSecond)} rows/s`}
      </p>
      ${job.error ? html`<p class="banner error" role="alert">${job.kind} failed: ${job.error}</p>` : ''}
      ${r && job.kind === 'verify'
        ? html`<p class="job-result">${r['clean'] ? html`<span class="badge ok">clean</span>` : html`<span class="badge bad">DRIFT</span>`}
            ${String(r['matching'])} matching, ${String(r['mismatched'])} mismatched, ${String(r['missingInTarget'])} missing in target, ${String(r['extraInTarget'])} extra in target${r['repaired'] ? `, ${String(r['repaired'])} re-enqueued` : ''}${r['staleCleared'] ? '; stale mark cleared' : ''}.</p>`
        : ''}
      ${r && job.kind === 'backfill'
        ? html`<p class="job-result">${r['finished'] ? 'Finished' : 'Stopped'}: ${String(r['copied'])} copied, ${String(r['skipped'])} skipped (already in the target), ${String(r['rowsPerSecond'])} rows/s. Next: a verify.</p>`
        : ''}
    </div>
  `;
}

function BrakeControl({ table, ask, act }: DetailProps) {
  const b = table.brake;
  return html`
    <div class="card">
      <h3>Safety brake</h3>
      ${!b
        ? html`<p>No brake data.</p>`
        : b.active
          ? html`<p><span class="badge bad">TRIPPED</span> at ${b.trippedAt ? new Date(b.trippedAt).toLocaleTimeString() : '?'}: ${b.signal} ${formatSignal(b.signal, b.value)} is past the threshold ${formatSignal(b.signal, b.threshold)}. Reads stay on the source.</p>
              <button type="button" onClick=${() =>
                ask({
                  title: `Release the brake on ${table.table}`,
                  text: `Reads of ${table.table} may be served by the target again (at ${table.readTargetPercent} %). Fix the cause first: the brake trips again if ${b.signal} stays past its threshold.`,
                  confirmLabel: 'Release the brake',
                  run: () => act('Releasing the brake', async () => {
                    const r = await api<{ released: boolean }>('POST', `/admin/tables/${encodeURIComponent(table.table)}/brake/release`);
                    return r.released ? `Brake on ${table.table} released.` : `The brake on ${table.table} was not on.`;
                  }),
                })}>Release brake</button>`
          : html`<p><span class="badge ok">off</span> Window ${b.window.seconds} s: ${b.window.targetOps} target operations, error rate ${(b.window.targetErrorRate * 100).toFixed(2)} %, ${b.window.shadowSamples} shadow samples, lag ${b.window.lagSeconds.toFixed(1)} s.</p>`}
    </div>
  `;
}

function DeadRows({ table, ask, act, onAuthError, onError }: DetailProps) {
  const [rows, setRows] = useState<DeadRow[] | null>(null);
  const load = useCallback(() => {
    api<{ rows: DeadRow[] }>('GET', `/admin/outbox?table=${encodeURIComponent(table.table)}&limit=50`).then(
      (r) => setRows(r.rows),
      (e: unknown) => onAuthError(e) || onError(`Listing dead rows: ${describe(e)}`),
    );
  }, [table.table]);
  useEffect(load, [load, table.outbox.dead]);
  const replay = (ids: string[] | undefined, text: string, store?: DeadRow['store']) =>
    ask({
      title: ids ? `Replay dead row #${ids[0]}` : `Replay all dead rows of ${table.table}`,
      text,
      confirmLabel: 'Replay',
      run: () => act('Replay', async () => {
        const r = await api<{ replayed: number }>('POST', '/admin/outbox/replay', { table: table.table, ...(ids ? { ids } : {}), ...(store ? { store } : {}) });
        load();
        return `${r.replayed} dead row(s) of ${table.table} made pending again; the outbox worker applies them.`;
      }),
    });
  return html`
    <div class="card wide">
      <h3>Dead outbox rows (${table.outbox.dead})</h3>
      ${rows === null
        ? html`<p>Loading…</p>`
        : rows.length === 0
          ? html`<p>None: every change reached the target or is still being retried.</p>`
          : html`
              <div class="board-wrap">
                <table class="dead">
                  <thead><tr><th scope="col">Id</th><th scope="col">Key</th><th scope="col">Op</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead>
                  <tbody>
                    ${rows.map(
                      (r) => html`<tr key=${r.id} data-id=${r.id}>
                        <td data-label="Id">${r.id}</td><td data-label="Key">${r.rowKey}</td><td data-label="Op">${r.op}</td><td data-label="Attempts">${r.attempts}</td>
                        <td data-label="Last error" class="error-text">${r.lastError ?? ''}</td>
                        <td><button type="button" class="secondary" onClick=${() =>
                          replay([r.id], `Outbox row #${r.id} (key ${r.rowKey}, ${r.op}) becomes pending with a fresh attempt count; the worker applies it to the target. If the cause (${r.lastError ?? 'unknown'}) is not fixed, it dies again after its attempts.`, r.store)}>Replay<span class="visually-hidden"> row ${r.id}</span></button></td>
                      </tr>`,
                    )}
                  </tbody>
                </table>
              </div>
              <button type="button" onClick=${() => replay(undefined, `All ${rows.length} dead rows of ${table.table} become pending again with fresh attempt counts.`)}>Replay all</button>
            `}
    </div>
  `;
}

/**
 * Cutover and rollback: shown only when Tandem reports the capability (the fenced primary
 * switch of DESIGN §5). This build has none, so nothing is rendered: no button that cannot work.
 */
function CutoverActions({ capabilities }: DetailProps) {
  if (!capabilities.cutover && !capabilities.rollback) return null;
  return html`<div class="card"><h3>Cutover</h3><p>This Tandem reports a cutover capability the console does not drive yet; use the CLI.</p></div>`;
}

function Charts({ table, onAuthError, onError }: DetailProps) {
  const [history, setHistory] = useState<History | null>(null);
  useEffect(() => {
    const load = () =>
      api<History>('GET', `/admin/tables/${encodeURIComponent(table.table)}/history`).then(setHistory, (e: unknown) => onAuthError(e) || onError(`Loading the charts: ${describe(e)}`));
    load();
    const timer = setInterval(load, 5_000);
    return () => clearInterval(timer);
  }, [table.table]);
  return html`
    <section class="charts" aria-labelledby="charts-title">
      <h3 id="charts-title">The last hour of ${table.table} <span class="sub">(${history ? `${history.t.length} samples every ${history.intervalSeconds} s, kept in memory` : 'loading'})</span></h3>
      ${history && history.t.length < 2 ? html`<p class="sub">The charts fill in as samples arrive (one every ${history.intervalSeconds} s).</p>` : ''}
      <div class="chart-grid">${CHARTS.map((spec, i) => html`<${Chart} key=${i} index=${i} history=${history} />`)}</div>
    </section>
  `;
}

function Chart({ index, history }: { index: number; history: History | null }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const spec = CHARTS[index];
  useEffect(() => {
    // uPlot needs two points for a time axis; until then the text above says why it is empty.
    if (!el.current || !history || !spec || history.t.length < 2) return;
    plot.current = drawChart(el.current, spec, history, plot.current);
  }, [history]);
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<figure class="chart"><div ref=${el} role="img" aria-label=${`${spec?.title ?? ''} chart${history ? `, latest ${latest(history, spec?.series[0]?.key)}` : ''}`}></div></figure>`;
}

function latest(history: History, key: string | undefined): string {
  const values = key ? history.series[key] ?? [] : [];
  const v = values[values.length - 1];
  return v === null || v === undefined ? 'no value yet' : String(v);
}

function ConfirmDialog({ confirmation, onClose }: { confirmation: Confirmation; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return html`
    <dialog ref=${ref} class="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-text" onCancel=${onClose}>
      <h2 id="confirm-title">${confirmation.title}?</h2>
      <p id="confirm-text">${confirmation.text}</p>
      <div class="buttons">
        <button type="button" class="secondary" onClick=${onClose}>Cancel</button>
        <button type="button" disabled=${busy} onClick=${async () => {
          setBusy(true);
          await confirmation.run();
          onClose();
        }}>${confirmation.confirmLabel}</button>
      </div>
    </dialog>
  `;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function formatDuration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

render(html`<${App} />`, document.getElementById('app') as HTMLElement);
