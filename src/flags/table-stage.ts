import type { StoreName } from '../db/store.js';
import type { TableState } from '../db/table-state.js';
import type { Stage } from '../events.js';

/** What one replica believes about one table's primary (refreshed from both state rows). */
export interface TablePrimary {
  /** The store whose state row says primary; null while a switch holds the table frozen. */
  primary: StoreName | null;
  epoch: number;
  source: TableState;
  target: TableState;
  /** The switch in progress (recorded on the frozen old primary's row), if any. */
  switching: { from: StoreName; to: StoreName; step: string; owner: string | null; startedAt: number } | null;
  /** Duration of the last finished switch, ms (0 before the first). */
  lastSwitchMs: number;
}

/** One table's stage as this replica resolved it from its flags and state rows. */
export interface TableStage {
  table: string;
  stage: Stage;
  /** The source's state row (dual-write, staleness of the target). */
  state: TableState | undefined;
  /** Both state rows: which store is primary, the epoch, a switch in progress. */
  primary?: TablePrimary | undefined;
  /** The flags ask for something this replica refuses; the stage above is kept. */
  conflict: string | undefined;
}
