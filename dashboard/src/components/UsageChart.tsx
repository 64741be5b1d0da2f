// The usage chart (uPlot, canvas). It is decoration for sighted users: the same numbers are
// in the table under it, so the canvas is hidden from assistive technology.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Zone } from "../format";

const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];

export interface Series {
  label: string;
  color: string;
  values: number[];
}

export function UsageChart({ times, series, zone, height = 260, label }: { times: number[]; series: Series[]; zone: Zone; height?: number; label: string }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = host.current;
    if (element === null) return;
    const width = Math.max(280, element.clientWidth);
    const options: uPlot.Options = {
      width,
      height,
      tzDate: zone === "utc" ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : (ts) => new Date(ts * 1000),
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { stroke: "#475467", grid: { stroke: "#eaecf0" }, ticks: { stroke: "#d0d5dd" }, space: 90 },
        // Counts: whole-number steps only.
        { stroke: "#475467", grid: { stroke: "#eaecf0" }, ticks: { stroke: "#d0d5dd" }, size: 60, incrs: COUNT_STEPS },
      ],
      series: [
        {},
        ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, fill: s.color + "1a", points: { show: times.length < 80 } })),
      ],
    };
    const chart = new uPlot(options, [times, ...series.map((s) => s.values)], element);
    const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(280, element.clientWidth), height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
    };
  }, [times, series, zone, height]);
  return (
    <figure className="chart">
      <div ref={host} aria-hidden="true" data-testid="usage-chart" />
      <figcaption className="visually-hidden">{label}; the numbers are in the table below.</figcaption>
    </figure>
  );
}
