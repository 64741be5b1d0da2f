import { formatCount } from "../format";

/** Usage against a quota, as an ARIA meter with the numbers in text beside it. */
export function QuotaMeter({ used, included, label }: { used: number; included: number; label: string }) {
  const fraction = included > 0 ? used / included : 0;
  const percent = Math.floor(fraction * 100);
  const tone = fraction >= 1 ? "red" : fraction >= 0.8 ? "amber" : "blue";
  return (
    <div className="meter-block">
      <div
        className="meter"
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={included}
        aria-valuenow={Math.min(used, included)}
        aria-valuetext={`${formatCount(used)} of ${formatCount(included)} requests (${percent}%)`}
      >
        <div className={`meter-fill meter-${tone}`} style={{ width: `${Math.min(100, fraction * 100)}%` }} />
      </div>
      <p className="meter-text">
        <strong data-testid="quota-used">{formatCount(used)}</strong> of {formatCount(included)} requests ·{" "}
        <span data-testid="quota-percent">{percent}%</span>
      </p>
    </div>
  );
}
