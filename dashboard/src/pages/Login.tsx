import { useEffect, useState, type FormEvent } from "react";
import { ApiError, login } from "../api/client";
import { ErrorBanner, Notice } from "../components/feedback";
import { formatWait } from "../format";
import { asApiError } from "../hooks";
import { navigate } from "../router";
import { useSession } from "../session";

export function LoginPage() {
  const session = useSession();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [waitUntil, setWaitUntil] = useState<number>();
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    if (waitUntil === undefined) return;
    const timer = setInterval(() => {
      setNow(Date.now());
      if (Date.now() >= waitUntil) setWaitUntil(undefined);
    }, 1000);
    return () => clearInterval(timer);
  }, [waitUntil]);

  const waitSeconds = waitUntil === undefined ? 0 : Math.max(0, Math.ceil((waitUntil - now) / 1000));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await login(email, password);
      await session.signedIn();
      navigate("/", { replace: true });
    } catch (e) {
      const apiError = asApiError(e);
      setError(apiError);
      if (apiError.status === 429 && apiError.retryAfter !== undefined) {
        setNow(Date.now());
        setWaitUntil(Date.now() + apiError.retryAfter * 1000);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login" id="main">
      <form className="login-card" onSubmit={submit} aria-labelledby="login-title">
        <div className="brand brand-large" aria-hidden="true">
          <span className="brand-mark">T</span> Tollgate
        </div>
        <h1 id="login-title">Sign in to your dashboard</h1>
        {session.notice !== undefined && error === undefined ? <Notice>{session.notice}</Notice> : null}
        {error !== undefined && error.status === 401 ? (
          <div className="banner banner-error" role="alert">
            <strong>Wrong email or password.</strong>
            <span>Check both and try again.</span>
          </div>
        ) : error !== undefined && error.status === 429 ? (
          <div className="banner banner-error" role="alert" data-testid="throttled">
            <strong>Too many sign-in attempts.</strong>
            <span>{waitSeconds > 0 ? `Try again in ${formatWait(waitSeconds)}.` : "You can try again now."}</span>
          </div>
        ) : (
          <ErrorBanner error={error} />
        )}
        <label className="field">
          <span>Email</span>
          <input type="email" name="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label className="field">
          <span>Password</span>
          <input type="password" name="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        <button type="submit" className="button button-primary button-block" disabled={busy || waitSeconds > 0}>
          {busy ? "Signing in…" : waitSeconds > 0 ? `Wait ${formatWait(waitSeconds)}` : "Sign in"}
        </button>
      </form>
    </main>
  );
}
