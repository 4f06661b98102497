//! API tokens: only a hash is stored; `token_prefix` (a non-secret leading part of the token)
//! finds the row, then the caller verifies the hash in constant time. A token may act as a
//! directory user (`user_id`, set by `scimhub token issue --user`): admin decisions taken with it
//! are the decisions of that user (see `crate::admin::authority`).

use diesel::prelude::*;

use super::schema::api_tokens;
use super::{fmt_ts, parse_ts, Store};
use crate::error::{HubError, HubResult};

/// An API token row (`scopes` is space-separated in the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub token_hash: String,
    pub token_prefix: String,
    pub scopes: Vec<String>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked: Option<chrono::DateTime<chrono::Utc>>,
    /// The SCIM id of the directory user this token acts as, when bound to one.
    pub user_id: Option<String>,
    /// When the token stops being accepted; `None`: never.
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRow {
    id: String,
    name: String,
    token_hash: String,
    token_prefix: String,
    scopes: String,
    created: String,
    last_used: Option<String>,
    revoked: Option<String>,
    user_id: Option<String>,
    expires: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
struct NewTokenRow<'a> {
    id: &'a str,
    name: &'a str,
    token_hash: &'a str,
    token_prefix: &'a str,
    scopes: &'a str,
    created: &'a str,
    user_id: Option<&'a str>,
    expires: Option<&'a str>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            name: r.name,
            token_hash: r.token_hash,
            token_prefix: r.token_prefix,
            scopes: r.scopes.split_whitespace().map(str::to_string).collect(),
            created: parse_ts(&r.created).unwrap_or_default(),
            last_used: r.last_used.as_deref().and_then(parse_ts),
            revoked: r.revoked.as_deref().and_then(parse_ts),
            user_id: r.user_id,
            expires: r.expires.as_deref().and_then(parse_ts),
        }
    }
}

impl Store {
    /// Stores a new token (its hash, never the token) and returns it. `user_id`: the directory
    /// user the token acts as (an existing User's id; the caller resolves it), if any.
    pub fn insert_token(
        &self,
        name: &str,
        token_hash: &str,
        prefix: &str,
        scopes: &[String],
        user_id: Option<&str>,
    ) -> HubResult<ApiToken> {
        self.insert_expiring_token(name, token_hash, prefix, scopes, user_id, None)
    }

    /// [`Store::insert_token`], with `expires`: when the token stops being accepted, if ever.
    pub fn insert_expiring_token(
        &self,
        name: &str,
        token_hash: &str,
        prefix: &str,
        scopes: &[String],
        user_id: Option<&str>,
        expires: Option<chrono::DateTime<chrono::Utc>>,
    ) -> HubResult<ApiToken> {
        let id = uuid::Uuid::now_v7().to_string();
        let created = fmt_ts(self.now());
        let expires_text = expires.map(fmt_ts);
        let scopes_text = scopes.join(" ");
        let mut conn = self.inner.write.get()?;
        let now = self.now();
        conn.transaction::<_, HubError, _>(|c| {
            diesel::insert_into(api_tokens::table)
                .values(NewTokenRow {
                    id: &id,
                    name,
                    token_hash,
                    token_prefix: prefix,
                    scopes: &scopes_text,
                    created: &created,
                    user_id,
                    expires: expires_text.as_deref(),
                })
                .execute(c)?;
            audit_token(
                c,
                "token.issue",
                now,
                serde_json::json!({"token": id, "name": name, "scopes": scopes,
                    "user_id": user_id, "expires": expires_text}),
            )
        })?;
        Ok(ApiToken {
            id,
            name: name.to_string(),
            token_hash: token_hash.to_string(),
            token_prefix: prefix.to_string(),
            scopes: scopes.to_vec(),
            created: parse_ts(&created).unwrap_or_default(),
            last_used: None,
            revoked: None,
            user_id: user_id.map(str::to_string),
            expires: expires_text.as_deref().and_then(parse_ts),
        })
    }

    /// The id and userName of the User whose id is `id_or_user_name`, else whose userName
    /// matches it (case-insensitively); `None` when there is no such user.
    pub fn find_user_id(&self, id_or_user_name: &str) -> HubResult<Option<(String, String)>> {
        let mut conn = self.read_conn()?;
        let Some(row) = super::find_user_row(&mut conn, id_or_user_name)? else {
            return Ok(None);
        };
        let doc: super::Doc =
            serde_json::from_str(&row.doc).map_err(|e| HubError::Backend(e.to_string()))?;
        let user_name = scim_schema::json::get_ci(&doc, "userName")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Some((row.id, user_name)))
    }

    /// The token with this prefix, revoked or not (the caller checks `revoked`).
    pub fn find_token_by_prefix(&self, prefix: &str) -> HubResult<Option<ApiToken>> {
        let mut conn = self.read_conn()?;
        let row = api_tokens::table
            .filter(api_tokens::token_prefix.eq(prefix))
            .select(TokenRow::as_select())
            .first(&mut *conn)
            .optional()?;
        Ok(row.map(ApiToken::from))
    }

    /// Records a use of the token at `at`, unless the stored `last_used` is already within
    /// `granularity` of it: a busy token costs one write per `granularity`, not one per request.
    /// Returns whether a row was written.
    pub fn touch_token(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
        granularity: chrono::Duration,
    ) -> HubResult<bool> {
        let now = fmt_ts(at);
        // Timestamps are fixed-width RFC 3339 UTC text, so they compare as strings.
        let stale_before = fmt_ts(at - granularity);
        let mut conn = self.inner.write.get()?;
        let n = diesel::update(
            api_tokens::table.filter(api_tokens::id.eq(id)).filter(
                api_tokens::last_used
                    .is_null()
                    .or(api_tokens::last_used.le(stale_before)),
            ),
        )
        .set(api_tokens::last_used.eq(Some(now)))
        .execute(&mut *conn)?;
        Ok(n > 0)
    }

    /// Revokes the token whose id is `id_or_name`, else the one token named `id_or_name`.
    /// Returns the revoked token as it is now. NotFound when there is no such token; Conflict
    /// when the name is given to more than one token that is not revoked yet (revoke by id).
    /// Revoking a revoked token again keeps its first revocation time.
    pub fn revoke_token(&self, id_or_name: &str) -> HubResult<ApiToken> {
        let now = fmt_ts(self.now());
        let mut conn = self.inner.write.get()?;
        let by_id = api_tokens::table
            .filter(api_tokens::id.eq(id_or_name))
            .select(TokenRow::as_select())
            .first(&mut *conn)
            .optional()?;
        let row = match by_id {
            Some(row) => row,
            None => {
                let mut rows: Vec<TokenRow> = api_tokens::table
                    .filter(api_tokens::name.eq(id_or_name))
                    .order(api_tokens::created.asc())
                    .select(TokenRow::as_select())
                    .load(&mut *conn)?;
                let live = rows.iter().filter(|r| r.revoked.is_none()).count();
                match (rows.len(), live) {
                    (0, _) => return Err(HubError::NotFound),
                    (_, 0) => rows.remove(0),
                    (_, 1) => rows
                        .into_iter()
                        .find(|r| r.revoked.is_none())
                        .ok_or(HubError::NotFound)?,
                    (_, n) => {
                        return Err(HubError::Uniqueness(format!(
                            "{n} tokens are named {id_or_name:?}; revoke one by its id"
                        )))
                    }
                }
            }
        };
        let at = self.now();
        conn.transaction::<_, HubError, _>(|c| {
            let revoked = diesel::update(
                api_tokens::table
                    .filter(api_tokens::id.eq(&row.id))
                    .filter(api_tokens::revoked.is_null()),
            )
            .set(api_tokens::revoked.eq(Some(&now)))
            .execute(c)?;
            if revoked > 0 {
                audit_token(
                    c,
                    "token.revoke",
                    at,
                    serde_json::json!({"token": row.id, "name": row.name}),
                )?;
            }
            Ok(())
        })?;
        let mut token = ApiToken::from(row);
        if token.revoked.is_none() {
            token.revoked = parse_ts(&now);
        }
        Ok(token)
    }

    /// All tokens, oldest first.
    pub fn list_tokens(&self) -> HubResult<Vec<ApiToken>> {
        let mut conn = self.read_conn()?;
        let rows = api_tokens::table
            .order(api_tokens::created.asc())
            .select(TokenRow::as_select())
            .load(&mut *conn)?;
        Ok(rows.into_iter().map(ApiToken::from).collect())
    }
}

/// The audit entry of a credential issued or revoked (by the operator at the command line:
/// `scimhub token …`, the only way tokens change).
fn audit_token(
    c: &mut super::DbConnection,
    action: &str,
    now: chrono::DateTime<chrono::Utc>,
    detail: serde_json::Value,
) -> HubResult<()> {
    super::audit_chain::append(
        c,
        &super::audit_chain::NewEntry {
            at: now,
            actor: "cli",
            user_id: "",
            connector: None,
            action,
            outcome: "ok",
            detail: &detail,
        },
    )?;
    Ok(())
}
