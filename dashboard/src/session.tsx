// Who is signed in, which tenant the pages show, and how times are displayed.
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { api, call, logout as endSession, onSessionExpired, refreshSession, type Me } from "./api/client";
import type { Zone } from "./format";
import { navigate } from "./router";

interface Session {
  me: Me | undefined;
  /** The tenant the tenant pages show: the user's own, or the one a platform admin picked. */
  tenantId: string | undefined;
  setTenantId: (id: string) => void;
  canWrite: boolean;
  isPlatformAdmin: boolean;
  zone: Zone;
  setZone: (zone: Zone) => void;
  /** Why the user is on the login page (expired session, signed out). */
  notice: string | undefined;
  signedIn: () => Promise<void>;
  signOut: () => Promise<void>;
  restoring: boolean;
}

const SessionContext = createContext<Session | undefined>(undefined);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (session === undefined) throw new Error("useSession outside SessionProvider");
  return session;
}

const ZONE_KEY = "tollgate.zone";
const TENANT_KEY = "tollgate.tenant";

export function SessionProvider({ children }: { children: React.ReactNode }) {
  const [me, setMe] = useState<Me>();
  const [restoring, setRestoring] = useState(true);
  const [notice, setNotice] = useState<string>();
  // Preferences only, never credentials, are kept in storage.
  const [zone, setZoneState] = useState<Zone>(() => (localStorage.getItem(ZONE_KEY) === "utc" ? "utc" : "local"));
  const [pickedTenant, setPickedTenant] = useState<string | undefined>(() => sessionStorage.getItem(TENANT_KEY) ?? undefined);

  const loadMe = useCallback(async () => {
    const who = await call(() => api.GET("/api/v1/me"));
    setMe(who);
    setNotice(undefined);
  }, []);

  useEffect(() => {
    onSessionExpired((message) => {
      setMe(undefined);
      setNotice(message);
      navigate("/login", { replace: true });
    });
    // A reload: the refresh cookie, if any, restores the session.
    void (async () => {
      try {
        if (await refreshSession()) await loadMe();
      } catch {
        // Shown as the login page.
      } finally {
        setRestoring(false);
      }
    })();
  }, [loadMe]);

  const value = useMemo<Session>(() => {
    const isPlatformAdmin = me?.role === "platform_admin";
    return {
      me,
      tenantId: isPlatformAdmin ? pickedTenant : (me?.tenant_id ?? undefined),
      setTenantId: (id) => {
        sessionStorage.setItem(TENANT_KEY, id);
        setPickedTenant(id);
      },
      canWrite: me !== undefined && me.role !== "tenant_viewer",
      isPlatformAdmin,
      zone,
      setZone: (z) => {
        localStorage.setItem(ZONE_KEY, z);
        setZoneState(z);
      },
      notice,
      signedIn: loadMe,
      signOut: async () => {
        await endSession();
        setMe(undefined);
        setNotice("You have signed out.");
        navigate("/login", { replace: true });
      },
      restoring,
    };
  }, [me, pickedTenant, zone, notice, loadMe, restoring]);

  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}
