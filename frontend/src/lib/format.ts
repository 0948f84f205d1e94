// Number formatting for the dashboard: short, fixed-width-friendly, and never "NaN" on the screen.

const DASH = "—";

function finite(value: number | null | undefined): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

export function formatCount(value: number | null | undefined): string {
  if (!finite(value)) return DASH;
  const abs = Math.abs(value);
  if (abs < 10_000) return Math.round(value).toLocaleString("en-US");
  if (abs < 1_000_000) return `${trim(value / 1000)}k`;
  if (abs < 1_000_000_000) return `${trim(value / 1_000_000)}M`;
  return `${trim(value / 1_000_000_000)}G`;
}

function trim(value: number): string {
  return (Math.abs(value) < 100 ? value.toFixed(1) : value.toFixed(0)).replace(/\.0$/, "");
}

/** Events per second: one decimal below 100, whole numbers above. */
export function formatRate(value: number | null | undefined): string {
  if (!finite(value)) return DASH;
  if (value === 0) return "0/s";
  if (Math.abs(value) < 100) return `${trim(value)}/s`;
  return `${formatCount(value)}/s`;
}

export function formatMs(value: number | null | undefined): string {
  if (!finite(value)) return DASH;
  if (value === 0) return "0 ms";
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 100) return `${value.toFixed(1).replace(/\.0$/, "")} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}

/** A ratio in [0, 1] as a percentage. */
export function formatRatio(value: number | null | undefined): string {
  if (!finite(value)) return DASH;
  const percent = value * 100;
  if (percent === 100 || percent === 0) return `${percent}%`;
  return `${percent.toFixed(1)}%`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (!finite(seconds) || seconds < 0) return DASH;
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = s % 60;
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
  if (minutes > 0) return `${minutes}m ${String(secs).padStart(2, "0")}s`;
  return `${secs}s`;
}

export function formatAgo(seconds: number | null | undefined): string {
  if (!finite(seconds)) return DASH;
  if (seconds < 1) return "just now";
  return `${formatDuration(seconds)} ago`;
}

/** hh:mm:ss for chart axes. */
export function formatClock(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

/**
 * The steps a time axis may put between its ticks, in seconds. uPlot's own list goes down to milliseconds, so a
 * few seconds of data got ticks 0.2 s apart, all labelled with the same hh:mm:ss; a whole second at least keeps
 * every label distinct.
 */
export const CLOCK_INCREMENTS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** Labels for time ticks `increment` seconds apart: hh:mm on whole minutes, else hh:mm:ss (distinct either way). */
export function clockLabels(ticks: number[], increment: number): string[] {
  const seconds = increment % 60 !== 0 || ticks.some((tick) => new Date(tick * 1000).getSeconds() !== 0);
  return ticks.map((tick) => (seconds ? formatClock(tick) : formatClock(tick).slice(0, 5)));
}
