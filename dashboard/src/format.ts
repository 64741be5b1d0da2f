// Formatting of times (browser time zone or UTC, as the user picks), counts and money.

export type Zone = "local" | "utc";

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: Zone, style: "datetime" | "date" | "time"): Intl.DateTimeFormat {
  const key = zone + style;
  let f = formatters.get(key);
  if (f === undefined) {
    const options: Intl.DateTimeFormatOptions = {
      timeZone: zone === "utc" ? "UTC" : undefined,
      ...(style !== "time" ? { year: "numeric", month: "short", day: "numeric" } : {}),
      ...(style !== "date" ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" } : {}),
    };
    f = new Intl.DateTimeFormat(undefined, options);
    formatters.set(key, f);
  }
  return f;
}

/** A timestamp in the chosen zone; "—" for none. */
export function formatTime(value: string | null | undefined, zone: Zone, style: "datetime" | "date" | "time" = "datetime"): string {
  if (value === null || value === undefined) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return formatter(zone, style).format(date) + (zone === "utc" && style !== "date" ? " UTC" : "");
}

/** The name of the zone times are shown in. */
export function zoneName(zone: Zone): string {
  return zone === "utc" ? "UTC" : Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** A billing period (a UTC calendar month, end exclusive) as "Jan 1 – Jan 31, 2026 (UTC)". */
export function formatPeriod(start: string, end: string): string {
  const last = new Date(Date.parse(end) - 1);
  const f = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });
  return `${f.formatRange(new Date(start), last)} (UTC)`;
}

/** Seconds as "15 min" or "42 s". */
export function formatWait(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} min`;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function formatCount(value: number): string {
  return integer.format(value);
}

export function formatPercent(fraction: number): string {
  return new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 2 }).format(fraction);
}

/** Minor units of an ISO 4217 currency, with the currency's own number of decimals. */
export function formatMoney(minor: number, currency: string): string {
  const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 10 ** digits);
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${new Intl.NumberFormat(undefined, { maximumFractionDigits: unit === 0 ? 0 : 1 }).format(value)} ${units[unit]}`;
}

export function formatLatency(us: number | null | undefined): string {
  if (us === null || us === undefined) return "—";
  return us >= 1000 ? `${new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 }).format(us / 1000)} ms` : `${us} µs`;
}
