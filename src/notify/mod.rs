//! Customer emails: what kinds there are, how one is queued in the transaction of the change
//! that causes it (`queue`), and the sender that delivers the queue (`sender`).

pub mod sender;
pub mod templates;

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor};

pub use templates::Email;

/// The kinds and states of emails live in the model, where the database sees them too.
pub use crate::model::email::{Kind, Status};

use crate::db::notifications::{self, NewNotification};

/// The domain of a `From` address (`billing@iotistic.cloud`, `Billing <b@x.io>`), for
/// Message-IDs.
pub fn domain_of(from: &str) -> &str {
    from.rsplit('@')
        .next()
        .map(|d| d.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("localhost")
}

/// Queues `email` for `recipient` in the caller's transaction. Its Message-ID is fixed here,
/// so every attempt to send it carries the same one. False when an email of that kind and
/// `dedupe_key` was queued for the customer before.
pub async fn queue<'c>(
    db: impl Executor<'c, Database = Any>,
    from: &str,
    customer_id: &str,
    recipient: &str,
    email: &Email<'_>,
    dedupe_key: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), domain_of(from));
    notifications::enqueue(
        db,
        &NewNotification {
            customer_id,
            kind: email.kind(),
            dedupe_key,
            recipient,
            subject: email.subject(),
            body: &email.body(),
            message_id: &message_id,
        },
        now,
    )
    .await
}

/// Queues the "instance ready" email, once per customer (its first time ready), in the
/// caller's transaction.
pub async fn instance_ready(
    tx: &mut sqlx::Transaction<'_, Any>,
    from: &str,
    customer_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let Some(customer) = crate::db::accounts::customer_by_id(&mut **tx, customer_id).await? else {
        return Ok(());
    };
    let Some(deployment) = crate::db::accounts::deployment(&mut **tx, customer_id).await? else {
        return Ok(());
    };
    let email = Email::InstanceReady {
        company_name: &customer.company_name,
        instance_url: &deployment.instance_url,
    };
    queue(
        &mut **tx,
        from,
        customer_id,
        &customer.email,
        &email,
        "",
        now,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::domain_of;

    #[test]
    fn message_ids_take_the_domain_of_the_from_address() {
        assert_eq!(domain_of("billing@iotistic.cloud"), "iotistic.cloud");
        assert_eq!(domain_of("Billing <b@example.io>"), "example.io");
        assert_eq!(domain_of("nobody"), "nobody");
        assert_eq!(domain_of("x@"), "localhost");
    }
}
