//! Sessions: started by a login, checked on every request, rotated on refresh, ended by a
//! logout, a password change or the replay of a rotated refresh token.
//!
//! A session is a row of `auth_sessions`. Every token names it, and every authenticated
//! request reads it together with its user and the user's tenant ([`check`]): one indexed
//! query, so a logout, a disabled user or a suspended tenant stops every token at once, on
//! every replica, with no cache to invalidate. The functions here take the raw tokens and
//! return the new ones, so any transport (the JSON body today, an HttpOnly cookie later) can
//! call them.

use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::auth::principal::{Principal, Role};
use crate::auth::token::{TokenKind, VerifiedToken};
use crate::error::ApiError;
use crate::state::AppState;

/// Why a session was ended (`auth_sessions.revoked_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user logged out.
    Logout,
    /// A rotated refresh token was presented again: someone else may hold the session.
    RefreshTokenReuse,
    /// The user changed their password; their other sessions end.
    PasswordChange,
}

impl EndReason {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::PasswordChange => "password_change",
        }
    }
}

/// A new token pair and the session it belongs to.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The session.
    pub session_id: Uuid,
    /// Bearer token for API calls.
    pub access_token: String,
    /// The only refresh token of the session that may be exchanged next.
    pub refresh_token: String,
}

/// Starts a session for `principal` (after a successful login) and issues its first tokens.
pub async fn start(state: &AppState, principal: &Principal) -> Result<IssuedTokens, ApiError> {
    let (session_id, refresh_token_id) = (Uuid::now_v7(), Uuid::now_v7());
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO auth_sessions (id, user_id, refresh_token_id, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            &[
                &session_id,
                &principal.user_id,
                &refresh_token_id,
                &refresh_ttl_secs(state),
            ],
        )
        .await?;
    issue(state, principal, session_id, refresh_token_id)
}

/// Exchanges `refresh_token` for a new pair, once: the presented token is retired, and a
/// validly signed but retired one (a replay, or a stolen copy used after its owner) ends the
/// session, so whoever holds its current tokens is signed out too.
pub async fn refresh(state: &AppState, refresh_token: &str) -> Result<IssuedTokens, ApiError> {
    let claimed = state.tokens.verify(refresh_token, TokenKind::Refresh)?;
    let presented = claimed
        .refresh_token_id
        .ok_or(ApiError::InvalidRefreshToken)?;
    let next = Uuid::now_v7();
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // The row lock serialises concurrent refreshes of one session: exactly one of two
    // presentations of the same token wins, and the other is a reuse.
    let session = tx
        .query_opt(
            "SELECT refresh_token_id, revoked_at IS NULL AND expires_at > now() \
               FROM auth_sessions WHERE id = $1 AND user_id = $2 FOR UPDATE",
            &[&claimed.session_id, &claimed.principal.user_id],
        )
        .await?
        .ok_or(ApiError::InvalidRefreshToken)?;
    let (current, live): (Uuid, bool) = (session.get(0), session.get(1));
    if !live {
        return Err(ApiError::InvalidRefreshToken);
    }
    if current != presented {
        end_in(&tx, claimed.session_id, EndReason::RefreshTokenReuse).await?;
        tx.commit().await?;
        tracing::warn!(
            user_id = %claimed.principal.user_id,
            session_id = %claimed.session_id,
            "Rotated refresh token presented again: session revoked."
        );
        return Err(ApiError::InvalidRefreshToken);
    }
    let principal = current_principal(&tx, claimed.principal.user_id)
        .await?
        .ok_or(ApiError::InvalidRefreshToken)?;
    tx.execute(
        "UPDATE auth_sessions SET refresh_token_id = $2, refreshed_at = now(), \
                expires_at = now() + make_interval(secs => $3) \
          WHERE id = $1",
        &[&claimed.session_id, &next, &refresh_ttl_secs(state)],
    )
    .await?;
    tx.commit().await?;
    issue(state, &principal, claimed.session_id, next)
}

/// Ends `session_id`; ending an ended session changes nothing.
pub async fn end(state: &AppState, session_id: Uuid, reason: EndReason) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    end_in(&tx, session_id, reason).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends the session `refresh_token` belongs to (a logout that holds only the refresh token,
/// as a cookie transport does). A token that does not verify ends nothing.
pub async fn end_by_refresh_token(state: &AppState, refresh_token: &str) -> Result<(), ApiError> {
    let claimed = state.tokens.verify(refresh_token, TokenKind::Refresh)?;
    end(state, claimed.session_id, EndReason::Logout).await
}

/// Ends every session of `user_id` except `keep`, inside the caller's transaction.
pub async fn end_others(
    tx: &Transaction<'_>,
    user_id: Uuid,
    keep: Uuid,
    reason: EndReason,
) -> Result<u64, ApiError> {
    Ok(tx
        .execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $3 \
              WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
            &[&user_id, &keep, &reason.as_str()],
        )
        .await?)
}

async fn end_in(tx: &Transaction<'_>, session_id: Uuid, reason: EndReason) -> Result<(), ApiError> {
    tx.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2 \
              WHERE id = $1 AND revoked_at IS NULL",
        &[&session_id, &reason.as_str()],
    )
    .await?;
    Ok(())
}

/// The caller of a verified access token as the database says now: its session must be live,
/// its user enabled and the user's tenant active. Role, email and tenant come from the
/// database, not from the token.
pub async fn check(state: &AppState, token: &VerifiedToken) -> Result<Principal, ApiError> {
    let client = state.pool.get().await?;
    // Prepared once per pooled connection: this runs on every authenticated request.
    let statement = client
        .prepare_cached(
            "SELECT u.email, u.role, u.tenant_id, \
                    s.revoked_at IS NULL AND s.expires_at > now(), \
                    u.disabled_at IS NULL, \
                    t.id IS NULL OR t.status = 'active' \
               FROM auth_sessions s JOIN users u ON u.id = s.user_id \
               LEFT JOIN tenants t ON t.id = u.tenant_id \
              WHERE s.id = $1 AND s.user_id = $2",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&token.session_id, &token.principal.user_id])
        .await?
        .ok_or(ApiError::SessionEnded {
            reason: "the session has ended",
        })?;
    let reason = match (row.get(3), row.get(4), row.get(5)) {
        (true, true, true) => None,
        (false, _, _) => Some("the session has ended"),
        (_, false, _) => Some("the account is disabled"),
        (_, _, false) => Some("the tenant is suspended"),
    };
    if let Some(reason) = reason {
        return Err(ApiError::SessionEnded { reason });
    }
    Ok(Principal {
        user_id: token.principal.user_id,
        email: row.get(0),
        role: Role::from_db(row.get(1))?,
        tenant_id: row.get(2),
    })
}

/// Reads the user afresh: `None` if gone, disabled, or in a suspended tenant.
async fn current_principal(
    tx: &Transaction<'_>,
    user_id: Uuid,
) -> Result<Option<Principal>, ApiError> {
    let row = tx
        .query_opt(
            "SELECT u.id, u.email, u.role, u.tenant_id \
               FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
              WHERE u.id = $1 AND u.disabled_at IS NULL \
                AND (t.id IS NULL OR t.status = 'active')",
            &[&user_id],
        )
        .await?;
    row.map(|row| {
        Ok(Principal {
            user_id: row.get(0),
            email: row.get(1),
            role: Role::from_db(row.get(2))?,
            tenant_id: row.get(3),
        })
    })
    .transpose()
}

fn issue(
    state: &AppState,
    principal: &Principal,
    session_id: Uuid,
    refresh_token_id: Uuid,
) -> Result<IssuedTokens, ApiError> {
    Ok(IssuedTokens {
        session_id,
        access_token: state.tokens.issue_access(principal, session_id)?,
        refresh_token: state
            .tokens
            .issue_refresh(principal, session_id, refresh_token_id)?,
    })
}

fn refresh_ttl_secs(state: &AppState) -> f64 {
    // Lifetimes are whole seconds of at most days: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let secs = state.tokens.refresh_ttl().as_secs() as f64;
    secs
}
