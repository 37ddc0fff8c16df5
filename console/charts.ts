import uPlot from 'uplot';
import type { History } from './api.js';

interface ChartSpec {
  title: string;
  unit: string;
  series: Array<{ key: string; label: string; stroke: string; dash?: number[] }>;
  range?: [number, number];
}

/** Per table: what people would rather look at than read. Dashes tell the lines apart without colour. */
export const CHARTS: ChartSpec[] = [
  {
    title: 'Writes per second, per store',
    unit: 'writes/s',
    series: [
      { key: 'sourceWritesPerSecond', label: 'source', stroke: '#1f5fa8' },
      { key: 'targetWritesPerSecond', label: 'target', stroke: '#b3541e', dash: [6, 4] },
    ],
  },
  {
    title: 'Apply results per sample',
    unit: 'rows',
    series: [
      { key: 'applied', label: 'applied', stroke: '#2b7a3d' },
      { key: 'skippedStale', label: 'skipped (stale)', stroke: '#6b5ca5', dash: [2, 3] },
      { key: 'applyFailed', label: 'failed', stroke: '#b3261e', dash: [8, 3] },
    ],
  },
  { title: 'Replication lag', unit: 's', series: [{ key: 'lagSeconds', label: 'lag', stroke: '#1f5fa8' }] },
  { title: 'Shadow-read consistency', unit: 'ratio', series: [{ key: 'consistency', label: 'consistency', stroke: '#2b7a3d' }], range: [0, 1] },
  { title: 'Target error rate', unit: 'ratio', series: [{ key: 'targetErrorRate', label: 'error rate', stroke: '#b3261e' }], range: [0, 1] },
];

/** Draws (or redraws) one chart into `el`; returns the uPlot instance to update later. */
export function drawChart(el: HTMLElement, spec: ChartSpec, history: History, previous: uPlot | undefined): uPlot {
  const data: uPlot.AlignedData = [history.t, ...spec.series.map((s) => history.series[s.key] ?? [])] as uPlot.AlignedData;
  const width = Math.max(260, Math.min(el.clientWidth || 360, 640));
  if (previous && previous.width === width) {
    previous.setData(data);
    return previous;
  }
  previous?.destroy();
  el.replaceChildren();
  return new uPlot(
    {
      width,
      height: 160,
      title: spec.title,
      scales: { x: { time: true }, y: spec.range ? { range: spec.range } : { auto: true, range: (_u, min, max) => [Math.min(0, min), Math.max(1, max)] } },
      axes: [{}, { label: spec.unit, size: 56 }],
      series: [{}, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, ...(s.dash ? { dash: s.dash } : {}) }))],
      legend: { live: true },
    },
    data,
    el,
  );
}
