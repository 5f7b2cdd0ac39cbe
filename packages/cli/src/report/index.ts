// The report side of `lora bench`: the HTML page, the chart files and the summary table.
export { renderReport, renderCharts, type Chart, type RenderedReport } from './html.js';
export { writeReport, type WrittenReport } from './write.js';
export { formatSummaryTable, summaryTable, summaryColumns, type FormatTableOptions, type Column, type SummaryTable, type TableCell } from './table.js';
export { decimate, MAX_POINTS } from './svg.js';
