// Hand-written SVG charts for the bench report: a line chart (loss, memory over time) and a bar chart
// (runtime, final loss, tokens/s). No chart library; every chart is a standalone SVG document that
// also embeds in the HTML page. Non-finite values are never drawn: lines break at them, bars show
// "n/a", and each chart lists what it left out under the plot.

/** Most points drawn per series; longer series are decimated with min/max buckets (spikes survive). */
export const MAX_POINTS = 2000;

export interface Point {
  x: number;
  y: number;
}

export interface LineSeries {
  name: string;
  color: string;
  points: Point[];
  /** 'solid' (default), 'dashed' or 'faint' (thin, translucent: per-step noise under a mean line). */
  style?: 'solid' | 'dashed' | 'faint';
  /** Draw a dot at every point (only when there are few of them). */
  markers?: boolean;
  /** Run the legend entry belongs to; series of one run share a legend entry. */
  legendKey?: string;
}

export interface LineChartSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** Legend: one entry per run. */
  legend: { name: string; color: string }[];
  /** Extra legend lines explaining line styles. */
  styleKey?: { label: string; style: 'solid' | 'dashed' | 'faint' }[];
  /** Horizontal reference lines (e.g. loss thresholds). */
  hlines?: { y: number; label: string }[];
  /** Notes about data that was not drawn, added by the caller (e.g. "r=8: no memory samples"). */
  notes?: string[];
}

export interface BarChartSpec {
  id: string;
  title: string;
  yLabel: string;
  bars: { name: string; color: string; value: number }[];
  /** Format of the value printed above each bar. */
  format?: (v: number) => string;
  notes?: string[];
}

const W = 760;
const PLOT_H = 300;
const M = { top: 40, right: 190, bottom: 52, left: 74 };
const NOTE_LINE = 16;
/** Least vertical distance between two reference-line labels (11 px text + 2 px). */
const LABEL_GAP = 13;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"';

/** Colour-blind-safe palette (Okabe–Ito without yellow), then golden-angle hues. */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000'];
export function runColor(i: number): string {
  if (i < PALETTE.length) return PALETTE[i];
  const hue = Math.round((i * 137.508) % 360);
  return `hsl(${hue}, 65%, 42%)`;
}

export function escapeXml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A value read from results.json: JSON turns NaN/Infinity into null, so null (or junk) is "missing". */
export function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '') return Number(v);
  return Number.NaN;
}

export function isFiniteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Round step sizes (1, 2, 5 × 10^k) giving about `count` ticks over [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): { lo: number; hi: number; step: number; ticks: number[] } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const rough = (hi - lo) / Math.max(1, count - 1);
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  const nlo = Math.floor(lo / step + 1e-9) * step;
  const nhi = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0, v = nlo; v <= nhi + step * 1e-6 && i < 1000; i++, v = nlo + i * step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return { lo: nlo, hi: nhi, step, ticks };
}

/** A tick label: as many decimals as the step needs; k/M suffixes for big numbers. */
export function formatTick(v: number, step: number): string {
  const a = Math.abs(v);
  if (a >= 1e6 && step >= 1e5) return `${trimZeros((v / 1e6).toFixed(Math.max(0, decimalsFor(step / 1e6))))}M`;
  if (a >= 1e4 && step >= 1e3) return `${trimZeros((v / 1e3).toFixed(Math.max(0, decimalsFor(step / 1e3))))}k`;
  return v.toFixed(decimalsFor(step));
}

function decimalsFor(step: number): number {
  if (!(step > 0)) return 0;
  return Math.max(0, Math.min(8, Math.ceil(-Math.log10(step) - 1e-9) + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0)));
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/**
 * At most `max` points, in x order: the first and last point, and per bucket the lowest and the
 * highest point, plus a non-finite marker where the bucket held missing values (so gaps survive).
 */
export function decimate(points: Point[], max = MAX_POINTS): Point[] {
  if (points.length <= max) return points;
  const inner = points.length - 2;
  const buckets = Math.max(1, Math.floor((max - 2) / 3));
  const size = inner / buckets;
  const out: Point[] = [points[0]];
  for (let b = 0; b < buckets; b++) {
    const start = 1 + Math.floor(b * size);
    const end = Math.min(points.length - 1, 1 + Math.floor((b + 1) * size));
    let lo = -1;
    let hi = -1;
    let gap = -1;
    for (let i = start; i < end; i++) {
      const p = points[i];
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) {
        if (gap < 0) gap = i;
        continue;
      }
      if (lo < 0 || p.y < points[lo].y) lo = i;
      if (hi < 0 || p.y > points[hi].y) hi = i;
    }
    const keep = [...new Set([lo, hi, gap].filter((i) => i >= 0))].sort((a, b2) => a - b2);
    for (const i of keep) out.push(points[i]);
  }
  out.push(points[points.length - 1]);
  return out;
}

interface Frame {
  height: number;
  plotH: number;
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

function frame(noteCount: number, legendRows: number | null): Frame {
  const plotH = Math.max(PLOT_H, (legendRows ?? 0) * 18 + 10);
  const height = M.top + plotH + M.bottom + noteCount * NOTE_LINE + (noteCount ? 6 : 0);
  const right = legendRows === null ? 30 : M.right;
  return { height, plotH, x0: M.left, x1: W - right, y0: M.top + plotH, y1: M.top };
}

function open(id: string, title: string, f: Frame, desc: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-${escapeXml(id)}" data-chart="${escapeXml(id)}" ` +
    `width="${W}" height="${f.height}" viewBox="0 0 ${W} ${f.height}" role="img" aria-labelledby="chart-${escapeXml(id)}-title" ${FONT} font-size="12">` +
    `<title id="chart-${escapeXml(id)}-title">${escapeXml(title)}</title><desc>${escapeXml(desc)}</desc>` +
    `<rect class="background" x="0" y="0" width="${W}" height="${f.height}" fill="#ffffff"/>` +
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${escapeXml(title)}</text>`
  );
}

function notesSvg(notes: string[], f: Frame): string {
  let s = '';
  notes.forEach((n, i) => {
    s += `<text class="note" x="${M.left}" y="${f.y0 + M.bottom + 4 + (i + 1) * NOTE_LINE - 4}" fill="#8a4b00" font-size="12">${escapeXml(n)}</text>`;
  });
  return s;
}

function yAxis(f: Frame, ticks: number[], step: number, sy: (v: number) => number, label: string): string {
  let s = '';
  for (const t of ticks) {
    const y = sy(t).toFixed(1);
    s += `<line class="grid" x1="${f.x0}" x2="${f.x1}" y1="${y}" y2="${y}" stroke="#e6e6e6" stroke-width="1"/>`;
    s += `<line x1="${f.x0 - 5}" x2="${f.x0}" y1="${y}" y2="${y}" stroke="#444"/>`;
    s += `<text class="tick" x="${f.x0 - 8}" y="${y}" dy="0.32em" text-anchor="end" fill="#333">${escapeXml(formatTick(t, step))}</text>`;
  }
  s += `<line class="axis" x1="${f.x0}" x2="${f.x0}" y1="${f.y1}" y2="${f.y0}" stroke="#444"/>`;
  const cy = (f.y0 + f.y1) / 2;
  s += `<text class="axis-label" transform="translate(18 ${cy}) rotate(-90)" text-anchor="middle" fill="#222" font-size="13">${escapeXml(label)}</text>`;
  return s;
}

function xAxisLine(f: Frame): string {
  return `<line class="axis" x1="${f.x0}" x2="${f.x1}" y1="${f.y0}" y2="${f.y0}" stroke="#444"/>`;
}

function dash(style: LineSeries['style']): string {
  if (style === 'dashed') return ' stroke-dasharray="7 4"';
  return '';
}

function legendSvg(f: Frame, entries: { name: string; color: string }[], styleKey: LineChartSpec['styleKey'] = []): string {
  const lx = f.x1 + 18;
  let y = f.y1 + 6;
  let s = '<g class="legend">';
  for (const e of entries) {
    s += `<rect x="${lx}" y="${y}" width="14" height="10" fill="${e.color}"/>`;
    s += `<text x="${lx + 20}" y="${y + 5}" dy="0.32em" fill="#222">${escapeXml(e.name)}</text>`;
    y += 18;
  }
  if (styleKey.length) y += 6;
  for (const k of styleKey) {
    const sw = k.style === 'faint' ? 1 : 2.2;
    const op = k.style === 'faint' ? ' stroke-opacity="0.5"' : '';
    s += `<line x1="${lx}" x2="${lx + 22}" y1="${y + 5}" y2="${y + 5}" stroke="#555" stroke-width="${sw}"${op}${dash(k.style)}/>`;
    s += `<text x="${lx + 28}" y="${y + 5}" dy="0.32em" fill="#444" font-size="11">${escapeXml(k.label)}</text>`;
    y += 18;
  }
  return `${s}</g>`;
}

function noData(f: Frame, text: string): string {
  return `<text class="no-data" x="${(f.x0 + f.x1) / 2}" y="${(f.y0 + f.y1) / 2}" text-anchor="middle" fill="#999" font-size="14">${escapeXml(text)}</text>`;
}

function finitePoint(p: Point): boolean {
  return Number.isFinite(p.x) && Number.isFinite(p.y);
}

/** A line chart; lines break at non-finite points and long series are decimated. */
export function lineChart(spec: LineChartSpec): string {
  const notes = [...(spec.notes ?? [])];
  const series = spec.series.map((s) => ({ ...s, points: decimate(s.points) }));
  const valid = series.flatMap((s) => s.points.filter(finitePoint));
  const hl = (spec.hlines ?? []).filter((h) => Number.isFinite(h.y));
  const legendRows = spec.legend.length + (spec.styleKey?.length ?? 0);
  const f = frame(notes.length, legendRows);
  let s = open(spec.id, spec.title, f, `${spec.yLabel} against ${spec.xLabel}; ${spec.legend.map((l) => l.name).join(', ')}`);

  if (valid.length === 0) {
    const xt = niceTicks(0, 1);
    const yt = niceTicks(0, 1);
    const sy = (v: number) => f.y0 - ((v - yt.lo) / (yt.hi - yt.lo)) * (f.y0 - f.y1);
    s += yAxis(f, yt.ticks, yt.step, sy, spec.yLabel) + xAxisLine(f) + xAxisTicks(f, xt, (v) => f.x0 + (v - xt.lo) * (f.x1 - f.x0), spec.xLabel);
    s += noData(f, 'no data to plot');
    s += legendSvg(f, spec.legend, spec.styleKey) + notesSvg(notes, f);
    return `${s}</svg>`;
  }

  let xmin = Infinity;
  let xmax = -Infinity;
  let ymin = Infinity;
  let ymax = -Infinity;
  for (const p of valid) {
    xmin = Math.min(xmin, p.x);
    xmax = Math.max(xmax, p.x);
    ymin = Math.min(ymin, p.y);
    ymax = Math.max(ymax, p.y);
  }
  // Reference lines only widen the y range a little (a threshold far below the data is not drawn).
  for (const h of hl) {
    if (h.y >= ymin - (ymax - ymin) * 0.25 && h.y <= ymax + (ymax - ymin) * 0.25) {
      ymin = Math.min(ymin, h.y);
      ymax = Math.max(ymax, h.y);
    }
  }
  const xt = niceTicks(xmin, xmax, 7);
  const yt = niceTicks(ymin, ymax, 6);
  const sx = (v: number) => f.x0 + ((v - xt.lo) / (xt.hi - xt.lo)) * (f.x1 - f.x0);
  const sy = (v: number) => f.y0 - ((v - yt.lo) / (yt.hi - yt.lo)) * (f.y0 - f.y1);

  s += yAxis(f, yt.ticks, yt.step, sy, spec.yLabel);
  s += xAxisLine(f) + xAxisTicks(f, xt, sx, spec.xLabel);
  const clip = `clip-${spec.id}`;
  s += `<defs><clipPath id="${escapeXml(clip)}"><rect x="${f.x0}" y="${f.y1 - 4}" width="${f.x1 - f.x0 + 4}" height="${f.y0 - f.y1 + 8}"/></clipPath></defs>`;
  s += `<g clip-path="url(#${escapeXml(clip)})">`;
  // Labels sit at the right end of their line, each at least LABEL_GAP px from the one above, with
  // a white halo so that curves crossing them stay readable.
  const shown = hl.filter((h) => h.y >= yt.lo && h.y <= yt.hi).map((h) => ({ ...h, py: sy(h.y) })).sort((a, b) => a.py - b.py);
  let prev = -Infinity;
  for (const h of shown) {
    const y = h.py.toFixed(1);
    const ly = Math.max(h.py - 4, prev + LABEL_GAP);
    prev = ly;
    s += `<line class="hline" x1="${f.x0}" x2="${f.x1}" y1="${y}" y2="${y}" stroke="#999" stroke-dasharray="2 4"/>`;
    s += `<text class="hline-label" x="${f.x1 - 4}" y="${ly.toFixed(1)}" text-anchor="end" fill="#666" font-size="11" stroke="#fff" stroke-width="3" paint-order="stroke">${escapeXml(h.label)}</text>`;
  }
  for (const ser of series) {
    const segs: Point[][] = [];
    let cur: Point[] = [];
    for (const p of ser.points) {
      if (finitePoint(p)) cur.push(p);
      else if (cur.length) {
        segs.push(cur);
        cur = [];
      }
    }
    if (cur.length) segs.push(cur);
    if (!segs.length) continue;
    let d = '';
    const lone: Point[] = [];
    for (const seg of segs) {
      if (seg.length === 1) lone.push(seg[0]);
      d += seg.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`).join('');
      if (seg.length === 1) d += 'l0 0';
    }
    const faint = ser.style === 'faint';
    const width = faint ? 1 : 2.2;
    const opacity = faint ? ' stroke-opacity="0.45"' : '';
    s += `<path class="series" data-series="${escapeXml(ser.name)}" d="${d}" fill="none" stroke="${ser.color}" stroke-width="${width}"${opacity}${dash(ser.style)} stroke-linejoin="round" stroke-linecap="round"/>`;
    const dots = ser.markers ? ser.points.filter(finitePoint) : lone;
    if (dots.length <= 300) {
      for (const p of dots) {
        s += `<circle class="marker" cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${ser.color}" stroke="#fff" stroke-width="1"/>`;
      }
    }
  }
  s += '</g>';
  s += legendSvg(f, spec.legend, spec.styleKey) + notesSvg(notes, f);
  return `${s}</svg>`;
}

function xAxisTicks(f: Frame, t: ReturnType<typeof niceTicks>, sx: (v: number) => number, label: string): string {
  let s = '';
  for (const v of t.ticks) {
    const x = sx(v).toFixed(1);
    s += `<line x1="${x}" x2="${x}" y1="${f.y0}" y2="${f.y0 + 5}" stroke="#444"/>`;
    s += `<text class="tick" x="${x}" y="${f.y0 + 18}" text-anchor="middle" fill="#333">${escapeXml(formatTick(v, t.step))}</text>`;
  }
  s += `<text class="axis-label" x="${(f.x0 + f.x1) / 2}" y="${f.y0 + 40}" text-anchor="middle" fill="#222" font-size="13">${escapeXml(label)}</text>`;
  return s;
}

/** A bar chart: one bar per run, from zero, with the value printed above each bar. */
export function barChart(spec: BarChartSpec): string {
  const notes = [...(spec.notes ?? [])];
  const fmt = spec.format ?? ((v: number) => formatTick(v, Math.abs(v) / 100 || 1));
  const f = frame(notes.length, null);
  let s = open(spec.id, spec.title, f, `${spec.yLabel} per run: ${spec.bars.map((b) => `${b.name} ${fmt(b.value)}`).join(', ')}`);
  const vals = spec.bars.map((b) => b.value).filter((v) => Number.isFinite(v));
  const lo = Math.min(0, ...vals);
  const hi = Math.max(0, ...vals);
  // Headroom above the tallest bar for its value label.
  const yt = niceTicks(lo < 0 ? lo * 1.08 : lo, hi === lo ? lo + 1 : hi * 1.08, 6);
  const sy = (v: number) => f.y0 - ((v - yt.lo) / (yt.hi - yt.lo)) * (f.y0 - f.y1);
  s += yAxis(f, yt.ticks, yt.step, sy, spec.yLabel);
  const n = Math.max(1, spec.bars.length);
  const band = (f.x1 - f.x0) / n;
  const bw = Math.min(90, band * 0.62);
  const base = sy(0);
  spec.bars.forEach((b, i) => {
    const cx = f.x0 + band * (i + 0.5);
    s += `<text class="tick" x="${cx.toFixed(1)}" y="${f.y0 + 18}" text-anchor="middle" fill="#333">${escapeXml(b.name)}</text>`;
    if (!Number.isFinite(b.value)) {
      s += `<text class="missing" x="${cx.toFixed(1)}" y="${(base - 8).toFixed(1)}" text-anchor="middle" fill="#8a4b00">n/a</text>`;
      return;
    }
    const y = sy(b.value);
    const top = Math.min(y, base);
    const h = Math.max(Math.abs(base - y), b.value === 0 ? 0 : 1);
    s += `<rect class="bar" data-series="${escapeXml(b.name)}" x="${(cx - bw / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${b.color}"><title>${escapeXml(`${b.name}: ${fmt(b.value)}`)}</title></rect>`;
    const ly = b.value >= 0 ? top - 6 : top + h + 14;
    s += `<text class="value" x="${cx.toFixed(1)}" y="${ly.toFixed(1)}" text-anchor="middle" fill="#222" font-weight="600">${escapeXml(fmt(b.value))}</text>`;
  });
  s += `<line class="axis" x1="${f.x0}" x2="${f.x1}" y1="${base.toFixed(1)}" y2="${base.toFixed(1)}" stroke="#444"/>`;
  if (!spec.bars.length) s += noData(f, 'no runs');
  s += notesSvg(notes, f);
  return `${s}</svg>`;
}
