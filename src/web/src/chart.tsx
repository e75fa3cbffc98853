// A time-series chart drawn by uPlot (small and fast, canvas). uPlot sets sizes and positions
// through element.style (the CSSOM), which the Content-Security-Policy allows; its stylesheet
// is bundled. The drawn values are also on the element (data-total, data-points) for tests and
// for screen readers' summary.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  color: string;
}

export function Chart({
  title,
  x,
  series,
  testId,
  height = 180,
  unit = "",
  sparse = false,
}: {
  title: string;
  /** Times in seconds since the epoch. */
  x: number[];
  series: ChartSeries[];
  testId: string;
  height?: number;
  unit?: string;
  /** Values with gaps (a percentile has none in a minute without jobs): points, joined across gaps. */
  sparse?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join("|");

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const opts: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#66736c", grid: { stroke: "#eef1ef" } },
        {
          stroke: "#66736c",
          grid: { stroke: "#eef1ef" },
          size: 48,
          values: (_u, splits) => splits.map((v) => `${v}${unit}`),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          fill: `${s.color}22`,
          points: { show: false },
        })),
      ],
    };
    const chart = new uPlot(opts, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, element);
    plot.current = chart;
    const resize = new ResizeObserver(() =>
      chart.setSize({ width: Math.max(200, element.clientWidth), height }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series themselves change; new values go through setData below.
  }, [shape, height, sparse]);

  useEffect(() => {
    plot.current?.setData([x, ...series.map((s) => s.values)] as uPlot.AlignedData);
  }, [x, series]);

  const values = series.flatMap((s) => s.values).filter((v): v is number => typeof v === "number");
  const total = values.reduce((a, b) => a + b, 0);
  const points = values.filter((v) => v > 0).length;
  return (
    <figure
      className="chart card"
      data-testid={testId}
      data-total={Math.round(total * 100) / 100}
      data-points={points}
    >
      <figcaption className="chart-title">{title}</figcaption>
      <div ref={box} className="chart-canvas" />
    </figure>
  );
}

/** Every step of the range, so that an empty minute is drawn as zero, not skipped. */
export function timeAxis(since: string, until: string, stepMinutes: number): number[] {
  const step = stepMinutes * 60;
  const first = Math.floor(Date.parse(since) / 1000 / step) * step;
  const last = Math.floor(Date.parse(until) / 1000 / step) * step;
  const axis: number[] = [];
  for (let t = first; t <= last; t += step) axis.push(t);
  return axis;
}

/** The values of `points` on `axis`, by their `at`; a missing step is `empty`. */
export function onAxis<T extends { at: string }>(
  axis: number[],
  points: T[],
  value: (point: T) => number | null,
  empty: number | null = 0,
): (number | null)[] {
  const byTime = new Map(points.map((p) => [Math.floor(Date.parse(p.at) / 1000), p]));
  return axis.map((t) => {
    const point = byTime.get(t);
    return point ? value(point) : empty;
  });
}
