// The plan-create form (platform admins): rate, quota, failure mode and pricing, typed from the
// generated `CreatePlan` schema. The server validates (and names the bad field, e.g.
// `pricing.tiers[1].up_to`); its error is shown at that field and at the top of the form.
import { useId, useState, type FormEvent } from "react";
import { api, call, type ApiError, type Schemas } from "../api/client";
import { ErrorBanner, Notice } from "../components/feedback";
import { asApiError } from "../hooks";

type CreatePlan = Schemas["CreatePlan"];
type Currency = Schemas["CurrencyCode"];
type Model = Schemas["Pricing"]["model"];

// Every code the document's enum lists; `satisfies` keeps the list within it.
const CURRENCIES = [
  "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "ISK", "BRL", "MXN", "CLP",
  "CNY", "HKD", "SGD", "INR", "KRW", "VND", "ZAR", "BHD", "JOD", "KWD", "OMR", "TND",
] as const satisfies readonly Currency[];
const MODELS = ["flat", "graduated", "volume", "package"] as const satisfies readonly Model[];

interface TierDraft {
  upTo: string;
  unitPrice: string;
  flatFee: string;
}

interface Draft {
  name: string;
  rps: string;
  burst: string;
  strict: boolean;
  hasQuota: boolean;
  included: string;
  cap: "hard" | "soft";
  failureMode: "open" | "closed";
  model: Model;
  currency: Currency;
  baseFeeMinor: string;
  includedUnits: string;
  tiers: TierDraft[];
  packageSize: string;
  packagePrice: string;
}

const EMPTY: Draft = {
  name: "",
  rps: "10",
  burst: "20",
  strict: false,
  hasQuota: true,
  included: "100000",
  cap: "soft",
  failureMode: "open",
  model: "flat",
  currency: "USD",
  baseFeeMinor: "0",
  includedUnits: "0",
  tiers: [
    { upTo: "100000", unitPrice: "0.001", flatFee: "" },
    { upTo: "", unitPrice: "0.0005", flatFee: "" },
  ],
  packageSize: "1000",
  packagePrice: "1",
};

/** A whole number typed into a field, or NaN (the server then names the field). */
function integer(text: string): number {
  return /^\s*\d+\s*$/.test(text) ? Number(text.trim()) : Number.NaN;
}

/** The request body, exactly as the generated type describes it. */
export function planBody(d: Draft): CreatePlan {
  const base = { currency: d.currency, base_fee_minor: integer(d.baseFeeMinor), included_units: integer(d.includedUnits) };
  const tiers = d.tiers.map((t) => ({
    up_to: t.upTo.trim() === "" ? null : integer(t.upTo),
    unit_price: t.unitPrice.trim(),
    ...(t.flatFee.trim() === "" ? {} : { flat_fee: t.flatFee.trim() }),
  }));
  let pricing: Schemas["Pricing"];
  switch (d.model) {
    case "flat":
      pricing = { model: "flat", ...base };
      break;
    case "graduated":
      pricing = { model: "graduated", ...base, tiers };
      break;
    case "volume":
      pricing = { model: "volume", ...base, tiers };
      break;
    case "package":
      pricing = { model: "package", ...base, package_size: integer(d.packageSize), package_price: d.packagePrice.trim() };
      break;
  }
  return {
    name: d.name.trim(),
    rate: { requests_per_second: integer(d.rps), burst: integer(d.burst), strict: d.strict },
    quota: d.hasQuota ? { included_requests: integer(d.included), cap: d.cap } : null,
    failure_mode: d.failureMode,
    pricing,
  };
}

/** The id of the input for an API field path (`pricing.tiers[1].up_to` → `…-pricing-tiers-1-up_to`). */
function fieldId(form: string, path: string): string {
  return `${form}-${path.replace(/[^A-Za-z0-9_]+/g, "-")}`;
}

export function CreatePlanForm({ onCreated }: { onCreated: () => void }) {
  const form = useId().replace(/:/g, "");
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string>();
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setTier = (i: number, patch: Partial<TierDraft>) =>
    setDraft((d) => ({ ...d, tiers: d.tiers.map((t, j) => (j === i ? { ...t, ...patch } : t)) }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const created = await call(() => api.POST("/api/v1/plans", { body: planBody(draft) }));
      setDone(`Plan ${created.name} created.`);
      setDraft(EMPTY);
      onCreated();
    } catch (e) {
      const failure = asApiError(e);
      setError(failure);
      // Move focus to the field the server named, so a keyboard user lands on it.
      if (failure.field !== undefined) document.getElementById(fieldId(form, failure.field))?.focus();
    } finally {
      setBusy(false);
    }
  };

  // Props that tie an input to the API field it sends, with the server's error under it.
  const bind = (path: string) => {
    const id = fieldId(form, path);
    const bad = error?.field === path;
    return {
      id,
      "aria-invalid": bad || undefined,
      "aria-describedby": bad ? `${id}-error` : undefined,
    };
  };
  const fieldError = (path: string) =>
    error?.field === path ? (
      <span className="field-error" id={`${fieldId(form, path)}-error`}>
        {error.message}
      </span>
    ) : null;
  const text = (path: string, label: string, value: string, onChange: (v: string) => void, extra: Record<string, unknown> = {}) => (
    <div className="field">
      <label htmlFor={fieldId(form, path)}>{label}</label>
      <input {...bind(path)} value={value} onChange={(e) => onChange(e.target.value)} {...extra} />
      {fieldError(path)}
    </div>
  );
  const number = { inputMode: "numeric", pattern: "[0-9]*", required: true };
  const tiered = draft.model === "graduated" || draft.model === "volume";

  return (
    <form className="panel" onSubmit={submit} aria-labelledby={`${form}-title`} data-testid="create-plan-form" noValidate>
      <h2 id={`${form}-title`}>Create a plan</h2>
      <div className="form-grid">
        {text("name", "Name", draft.name, (v) => set("name", v), { required: true, maxLength: 100, placeholder: "Growth" })}
        {text("rate.requests_per_second", "Requests per second", draft.rps, (v) => set("rps", v), number)}
        {text("rate.burst", "Burst", draft.burst, (v) => set("burst", v), number)}
        <div className="field field-check">
          <label>
            <input type="checkbox" checked={draft.strict} onChange={(e) => set("strict", e.target.checked)} /> Strict rate (one Redis round trip per request)
          </label>
        </div>
        <div className="field">
          <label htmlFor={fieldId(form, "failure_mode")}>When Redis is unreachable</label>
          <select {...bind("failure_mode")} value={draft.failureMode} onChange={(e) => set("failureMode", e.target.value as Draft["failureMode"])}>
            <option value="open">Open: serve on local limits</option>
            <option value="closed">Closed: refuse</option>
          </select>
          {fieldError("failure_mode")}
        </div>
      </div>

      <fieldset className="fieldset">
        <legend>Monthly quota</legend>
        <div className="field field-check">
          <label>
            <input type="checkbox" checked={draft.hasQuota} onChange={(e) => set("hasQuota", e.target.checked)} /> Limit requests per month
          </label>
        </div>
        {draft.hasQuota ? (
          <div className="form-grid">
            {text("quota.included_requests", "Included requests", draft.included, (v) => set("included", v), number)}
            <div className="field">
              <label htmlFor={fieldId(form, "quota.cap")}>At the quota</label>
              <select {...bind("quota.cap")} value={draft.cap} onChange={(e) => set("cap", e.target.value as Draft["cap"])}>
                <option value="soft">Soft: serve and bill overage</option>
                <option value="hard">Hard: refuse</option>
              </select>
              {fieldError("quota.cap")}
            </div>
          </div>
        ) : null}
      </fieldset>

      <fieldset className="fieldset">
        <legend>Pricing</legend>
        <div className="form-grid">
          <div className="field">
            <label htmlFor={fieldId(form, "pricing.model")}>Model</label>
            <select {...bind("pricing.model")} value={draft.model} onChange={(e) => set("model", e.target.value as Model)}>
              {MODELS.map((m) => (
                <option key={m} value={m}>
                  {m}
                </option>
              ))}
            </select>
            {fieldError("pricing.model")}
          </div>
          <div className="field">
            <label htmlFor={fieldId(form, "pricing.currency")}>Currency</label>
            <select {...bind("pricing.currency")} value={draft.currency} onChange={(e) => set("currency", e.target.value as Currency)}>
              {CURRENCIES.map((c) => (
                <option key={c} value={c}>
                  {c}
                </option>
              ))}
            </select>
            {fieldError("pricing.currency")}
          </div>
          {text("pricing.base_fee_minor", "Base fee per month (minor units, e.g. cents)", draft.baseFeeMinor, (v) => set("baseFeeMinor", v), number)}
          {text("pricing.included_units", "Units included in the base fee", draft.includedUnits, (v) => set("includedUnits", v), number)}
          {draft.model === "package" ? (
            <>
              {text("pricing.package_size", "Units per package", draft.packageSize, (v) => set("packageSize", v), number)}
              {text("pricing.package_price", `Price per package (${draft.currency}, decimal)`, draft.packagePrice, (v) => set("packagePrice", v), { inputMode: "decimal", required: true })}
            </>
          ) : null}
        </div>
        {tiered ? (
          <div className="tiers" role="group" aria-label="Price tiers">
            <p className="muted">Tiers ascend; leave “up to” empty on the last tier so every unit has a price. Prices are decimals in {draft.currency}.</p>
            {draft.tiers.map((t, i) => (
              <div className="form-grid tier-row" key={i} data-testid={`tier-${i}`}>
                {text(`pricing.tiers[${i}].up_to`, `Tier ${i + 1}: up to (units)`, t.upTo, (v) => setTier(i, { upTo: v }), { inputMode: "numeric", placeholder: "open-ended" })}
                {text(`pricing.tiers[${i}].unit_price`, `Tier ${i + 1}: unit price`, t.unitPrice, (v) => setTier(i, { unitPrice: v }), { inputMode: "decimal", required: true })}
                {text(`pricing.tiers[${i}].flat_fee`, `Tier ${i + 1}: flat fee`, t.flatFee, (v) => setTier(i, { flatFee: v }), { inputMode: "decimal", placeholder: "0" })}
                <button
                  type="button"
                  className="button button-small"
                  onClick={() => setDraft((d) => ({ ...d, tiers: d.tiers.filter((_, j) => j !== i) }))}
                  disabled={draft.tiers.length <= 1}
                  aria-label={`Remove tier ${i + 1}`}
                >
                  Remove
                </button>
              </div>
            ))}
            <button type="button" className="button button-small" onClick={() => setDraft((d) => ({ ...d, tiers: [...d.tiers, { upTo: "", unitPrice: "", flatFee: "" }] }))}>
              Add tier
            </button>
          </div>
        ) : null}
      </fieldset>

      <ErrorBanner error={error} />
      {done !== undefined ? <Notice tone="success">{done}</Notice> : null}
      <button type="submit" className="button button-primary" disabled={busy}>
        Create plan
      </button>
    </form>
  );
}
