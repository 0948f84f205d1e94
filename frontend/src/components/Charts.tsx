import { useMemo } from "react";
import { formatMs, formatRate } from "../lib/format";
import { type Point, tiersIn } from "../lib/history";
import { Chart, type SeriesSpec } from "./Chart";

const TIER_COLORS: Record<string, string> = {
  anonymous: "#64748b",
  free: "#2563eb",
  pro: "#7c3aed",
  enterprise: "#0f766e",
};

function last(points: Point[], pick: (point: Point) => number | null): number | null {
  const point = points[points.length - 1];
  return point === undefined ? null : pick(point);
}

export function Charts({ points }: { points: Point[] }) {
  const xs = useMemo(() => points.map((point) => point.t), [points]);
  const tiers = tiersIn(points);

  const decisions = useMemo(() => {
    const series: SeriesSpec[] = [];
    const data: (number | null)[][] = [xs];
    for (const tier of tiers) {
      const color = TIER_COLORS[tier] ?? "#b45309";
      series.push({ label: `${tier} allowed`, color });
      data.push(points.map((point) => (point.decisions === null ? null : (point.decisions[tier]?.allowed ?? 0))));
      series.push({ label: `${tier} limited`, color, dash: [6, 4] });
      data.push(points.map((point) => (point.decisions === null ? null : (point.decisions[tier]?.limited ?? 0))));
    }
    return { series, data };
  }, [points, tiers.join("|"), xs]); // eslint-disable-line react-hooks/exhaustive-deps

  const rate = (value: number | null) => formatRate(value);
  return (
    <section aria-labelledby="charts-title" className="charts">
      <h2 id="charts-title" className="visually-hidden">
        Gateway fleet traffic over the last 15 minutes
      </h2>
      <Chart
        testId="chart-requests"
        title="Request rate (all gateways)"
        series={[{ label: "requests/s", color: "#2563eb" }]}
        data={[xs, points.map((point) => point.rps)]}
        format={rate}
        summary={`now ${formatRate(last(points, (p) => p.rps))}`}
      />
      <Chart
        testId="chart-latency"
        title="Latency (all gateways, 5 s window)"
        series={[
          { label: "p50", color: "#0f766e" },
          { label: "p95", color: "#b45309" },
          { label: "p99", color: "#b91c1c" },
        ]}
        data={[xs, points.map((p) => p.p50), points.map((p) => p.p95), points.map((p) => p.p99)]}
        format={formatMs}
        summary={`p50 ${formatMs(last(points, (p) => p.p50))}, p95 ${formatMs(last(points, (p) => p.p95))}, p99 ${formatMs(last(points, (p) => p.p99))}`}
      />
      <Chart
        testId="chart-decisions"
        title="Rate-limit decisions per tier"
        series={decisions.series.length ? decisions.series : [{ label: "no decisions yet", color: "#64748b" }]}
        data={decisions.series.length ? decisions.data : [xs, points.map((p) => (p.decisions === null ? null : 0))]}
        format={rate}
        summary={tiers
          .map((tier) => `${tier} ${formatRate(last(points, (p) => p.decisions?.[tier]?.allowed ?? null))} allowed`)
          .join(", ")}
      />
      <Chart
        testId="chart-errors"
        title="429 and 5xx responses"
        series={[
          { label: "429/s", color: "#b45309" },
          { label: "5xx/s", color: "#b91c1c" },
        ]}
        data={[xs, points.map((p) => p.tooManyPerSecond), points.map((p) => p.serverErrorsPerSecond)]}
        format={rate}
        summary={`429 ${formatRate(last(points, (p) => p.tooManyPerSecond))}, 5xx ${formatRate(last(points, (p) => p.serverErrorsPerSecond))}`}
      />
    </section>
  );
}
