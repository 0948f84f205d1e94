import { useEffect, useRef } from "react";
import uPlot from "uplot";
import { CLOCK_INCREMENTS, clockLabels } from "../lib/format";

export interface SeriesSpec {
  label: string;
  color: string;
  dash?: number[];
}

interface Props {
  title: string;
  series: SeriesSpec[];
  /** [x (epoch seconds), ...one array per series]. */
  data: (number | null)[][];
  format: (value: number | null) => string;
  /** A short text equivalent for screen readers (the latest values). */
  summary: string;
  testId?: string;
}

const HEIGHT = 180;

/** A uPlot time series; the chart is rebuilt only when the set of series changes, and fed data otherwise. */
export function Chart({ title, series, data, format, summary, testId }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = series.map((s) => s.label).join("|");

  useEffect(() => {
    const element = box.current;
    if (element === null) return;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height: HEIGHT,
      legend: { show: true, live: false },
      padding: [8, 32, 0, 0], // room on the right for the newest tick's hh:mm:ss, centred on the plot's edge
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        {
          stroke: "#475569",
          grid: { stroke: "#e2e8f0" },
          space: 70, // px between ticks: an hh:mm:ss label never overlaps the next
          incrs: CLOCK_INCREMENTS,
          values: (_u, ticks, _axis, _space, increment) => clockLabels(ticks, increment),
        },
        { stroke: "#475569", grid: { stroke: "#e2e8f0" }, size: 64, values: (_u, ticks) => ticks.map((t) => format(t)) },
      ],
      series: [
        {},
        ...series.map((spec) => ({
          label: spec.label,
          stroke: spec.color,
          width: 2,
          dash: spec.dash,
          value: (_u: uPlot, value: number | null) => format(value),
          points: { show: false },
          spanGaps: false,
        })),
      ],
    };
    const chart = new uPlot(options, data as uPlot.AlignedData, element);
    plot.current = chart;
    const observer = new ResizeObserver(() => chart.setSize({ width: Math.max(element.clientWidth, 200), height: HEIGHT }));
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series change; data flows in through the effect below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  const xs = data[0] ?? [];
  const shown = (data[1] ?? []).filter((value) => value !== null).length;
  return (
    <figure className="card chart" data-testid={testId} data-points={shown} data-first={xs[0] ?? ""}>
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${summary}`} />
    </figure>
  );
}
