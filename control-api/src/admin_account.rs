//! `create-admin`: the platform admin that `make up` hands to the user, with a generated
//! password (never a default). Idempotent: a password that still works is kept.

use anyhow::Context;
use tokio_postgres::Client;
use tollgate_control_api::auth::password;
use uuid::Uuid;

/// What [`ensure_admin`] did.
#[derive(Debug)]
pub struct AdminAccount {
    /// The password that works now (print once, never log).
    pub password: String,
    /// Whether the given password was kept.
    pub reused: bool,
}

/// Makes `email` a platform admin whose password is `reuse` if that still works, or a newly
/// generated one otherwise.
pub async fn ensure_admin(
    client: &mut Client,
    email: &str,
    reuse: Option<&str>,
) -> anyhow::Result<AdminAccount> {
    let email = tollgate_control_api::validate::email("TOLLGATE_ADMIN_EMAIL", email)?;
    let tx = client.transaction().await?;
    let existing = tx
        .query_opt(
            "SELECT id, role, password_hash FROM users WHERE lower(email) = $1 FOR UPDATE",
            &[&email],
        )
        .await
        .context("looking up the admin user")?;
    if let Some(row) = &existing {
        let role: &str = row.get(1);
        anyhow::ensure!(
            role == "platform_admin",
            "{email} exists but is a {role}, not a platform admin"
        );
        if let Some(reuse) = reuse.filter(|p| !p.is_empty())
            && password::verify_password(reuse, row.get(2))
        {
            tx.execute(
                "UPDATE users SET disabled_at = NULL WHERE id = $1",
                &[&row.get::<_, Uuid>(0)],
            )
            .await?;
            tx.commit().await?;
            return Ok(AdminAccount {
                password: reuse.to_owned(),
                reused: true,
            });
        }
    }
    let new_password = password::generate_password()?;
    let hash = password::hash_password(&new_password)?;
    let (id, action) = match existing {
        Some(row) => {
            let id: Uuid = row.get(0);
            tx.execute(
                "UPDATE users SET password_hash = $2, disabled_at = NULL, updated_at = now() \
                 WHERE id = $1",
                &[&id, &hash],
            )
            .await?;
            // Whoever held the old password's sessions is signed out with it.
            tx.execute(
                "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'password_change' \
                 WHERE user_id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?;
            (id, "user.reset_password")
        }
        None => {
            let id = Uuid::now_v7();
            tx.execute(
                "INSERT INTO users (id, tenant_id, email, password_hash, role) \
                 VALUES ($1, NULL, $2, $3, 'platform_admin')",
                &[&id, &email, &hash],
            )
            .await
            .context("creating the admin user")?;
            (id, "user.create")
        }
    };
    tx.execute(
        "INSERT INTO audit_log (actor, action, resource_type, resource_id, details) \
         VALUES ('system', $1, 'user', $2, jsonb_build_object('email', $3::text, 'role', 'platform_admin'))",
        &[&action, &id.to_string(), &email],
    )
    .await?;
    tx.commit().await?;
    Ok(AdminAccount {
        password: new_password,
        reused: false,
    })
}
