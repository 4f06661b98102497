//! The durable id of the operation a connector call runs for.
//!
//! The worker runs each outbox operation inside [`scope`] with an id that stays the same across
//! retries of that operation (the outbox row); connectors that tell a receiver about an event
//! (the webhook's event id) derive their ids from it so receivers can de-duplicate retries. The
//! trait's methods stay as they are: the id is context, not input.

use std::future::Future;

tokio::task_local! {
    static OPERATION_ID: String;
}

/// Runs `f` with `id` as the current operation id.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    OPERATION_ID.scope(id, f).await
}

/// The current operation id, when the call runs inside [`scope`].
pub fn current() -> Option<String> {
    OPERATION_ID.try_with(Clone::clone).ok()
}
