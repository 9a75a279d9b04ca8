//! Admin commands on users: add, disable and enable, unlock, reset the
//! authenticator.

use serde_json::{Value, json};

use super::{AdminError, Result, admin_caller, audit};
use crate::crypto;
use crate::domain::audit::Audit;
use crate::domain::signin::{check_new_password, hash_password, normalise_username};
use crate::service::Keyport;
use crate::store::directory::{NewUser, User};
use crate::store::{self};

pub async fn add_user(
    kp: &Keyport,
    email: &str,
    name: Option<&str>,
    password: String,
) -> Result<Value> {
    let email = normalise_username(email);
    if !email.contains('@') || email.len() > 254 {
        return Err(AdminError(format!("{email:?} is not an email address")));
    }
    if let Err(why) = check_new_password(&password) {
        return Err(AdminError(why.into()));
    }
    let phc = kp.password_work(move || hash_password(&password)).await??;
    let id = crypto::random_id();
    let now = kp.clock.now();
    let (id2, email2, name2) = (id.clone(), email.clone(), name.map(str::to_string));
    kp.store
        .write(move |c| {
            Box::pin(async move {
                let user = NewUser {
                    id: &id2,
                    email: &email2,
                    name: name2.as_deref(),
                    password_hash: &phc,
                    is_admin: false,
                    now,
                };
                store::directory::insert_user(c, user).await
            })
        })
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                AdminError(format!("a user with email {email} exists already"))
            } else {
                e.into()
            }
        })?;
    audit(kp, "admin.user_add", json!({ "email": email })).await?;
    Ok(json!({ "id": id, "email": email, "name": name }))
}

async fn user(kp: &Keyport, email: &str) -> Result<User> {
    store::directory::user_by_email(kp.store.pool(), &normalise_username(email))
        .await?
        .ok_or_else(|| AdminError(format!("no user {email}")))
}

/// Refuses the user every sign-in and ends every session they have, CLI and
/// browser alike: an admin's deliberate act, audited.
pub async fn disable_user(kp: &Keyport, email: &str) -> Result<Value> {
    let user = user(kp, email).await?;
    let now = kp.clock.now();
    let (id, email) = (user.id.clone(), user.email.clone());
    let ended = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                store::directory::set_disabled(&mut *c, &id, true).await?;
                let ended =
                    store::sessions::revoke_all_of_user(&mut *c, &id, "user_disabled", now).await?;
                store::browser::delete_all_of_user(&mut *c, &id).await?;
                Audit::new("admin.user_disable", "success")
                    .actor(Some("admin"))
                    .detail(json!({ "email": email, "sessions_ended": ended }))
                    .record(c, now * 1000, &admin_caller())
                    .await?;
                Ok(ended)
            })
        })
        .await?;
    Ok(json!({ "email": user.email, "disabled": true, "sessions_ended": ended }))
}

/// Lets a disabled user sign in again (their old sessions stay ended).
pub async fn enable_user(kp: &Keyport, email: &str) -> Result<Value> {
    let user = user(kp, email).await?;
    let id = user.id.clone();
    kp.store
        .write(move |c| {
            Box::pin(async move { store::directory::set_disabled(c, &id, false).await })
        })
        .await?;
    audit(kp, "admin.user_enable", json!({ "email": user.email })).await?;
    Ok(json!({ "email": user.email, "disabled": false }))
}

/// Clears the failed-sign-in count (and so a lockout) of a username; it
/// need not belong to an account, as failures are counted for any name.
pub async fn unlock_user(kp: &Keyport, email: &str) -> Result<Value> {
    let name = normalise_username(email);
    let cleared_name = name.clone();
    let cleared = kp
        .store
        .write(move |c| Box::pin(async move { store::lockout::clear(c, &cleared_name).await }))
        .await?;
    audit(kp, "admin.user_unlock", json!({ "email": name })).await?;
    Ok(json!({ "email": name, "unlocked": true, "had_failures": cleared }))
}

/// Turns off a user's authenticator and deletes their recovery codes, for
/// someone who lost their phone: they sign in with the password (and email
/// or text-message codes, if on) and can set up a new authenticator.
pub async fn reset_totp(kp: &Keyport, email: &str) -> Result<Value> {
    let user = user(kp, email).await?;
    let now = kp.clock.now();
    let (id, email) = (user.id.clone(), user.email.clone());
    let had = kp
        .store
        .write(move |c| {
            Box::pin(async move {
                let had = crate::domain::two_step::reset_totp(&mut *c, &id).await?;
                Audit::new("admin.user_totp_reset", "success")
                    .detail(json!({ "email": email, "had_authenticator": had }))
                    .record(c, now * 1000, &admin_caller())
                    .await?;
                Ok(had)
            })
        })
        .await?;
    Ok(json!({ "email": user.email, "totp_reset": true, "had_authenticator": had }))
}
