import type { TableState } from '../db/table-state.js';
import type { Stage } from '../events.js';

/** One table's stage as this replica resolved it from its flags and state row. */
export interface TableStage {
  table: string;
  stage: Stage;
  state: TableState | undefined;
  /** The flags ask for something this replica refuses; the stage above is kept. */
  conflict: string | undefined;
}
